// The official OpenAI SDK (npm `openai`) against kestrel-server's HTTP API:
// completions and chat, streamed and not, n = 2, logprobs, stop strings, a
// seed. Streamed text must equal non-streamed text, greedy text must equal
// the model's golden output, and the summed usage must equal what the
// server's /metrics counted. Prints one line per check; exits 1 on failure.
//
//   node openai_e2e.js BASE_URL MODEL GOLDEN_JSON
'use strict';
const fs = require('fs');
const OpenAI = require('openai');

const [baseUrl, model, goldenPath] = process.argv.slice(2);
const golden = JSON.parse(fs.readFileSync(goldenPath, 'utf8'));
const client = new OpenAI({ baseURL: `${baseUrl}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120000 });

const usage = { prompt: 0, completion: 0 };
let failures = 0;

function check(ok, what, detail) {
  console.log(`${ok ? 'ok' : 'FAIL'}: ${what}${ok ? '' : ` -- ${detail}`}`);
  if (!ok) failures += 1;
}

function countUsage(u) {
  usage.prompt += u.prompt_tokens;
  usage.completion += u.completion_tokens;
}

async function counters() {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  const sum = (name) => text.split('\n')
    .filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `))
    .reduce((total, line) => total + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
  return { prompt: sum('kestrel_prompt_tokens_total'), completion: sum('kestrel_generation_tokens_total') };
}

// Non-streamed and streamed completions of the same request; returns both.
async function completionBoth(params) {
  const whole = await client.completions.create({ model, ...params });
  countUsage(whole.usage);
  const stream = await client.completions.create({
    model, ...params, stream: true, stream_options: { include_usage: true },
  });
  const texts = [];
  const finish = [];
  let tokens = 0;
  for await (const chunk of stream) {
    if (chunk.usage) countUsage(chunk.usage);
    for (const choice of chunk.choices) {
      texts[choice.index] = (texts[choice.index] || '') + choice.text;
      if (choice.finish_reason) finish[choice.index] = choice.finish_reason;
      if (choice.logprobs) tokens += choice.logprobs.tokens.length;
    }
  }
  return { whole, texts, finish, tokens };
}

async function chatBoth(params) {
  const whole = await client.chat.completions.create({ model, ...params });
  countUsage(whole.usage);
  const stream = await client.chat.completions.create({
    model, ...params, stream: true, stream_options: { include_usage: true },
  });
  const texts = [];
  let roles = 0;
  for await (const chunk of stream) {
    if (chunk.usage) countUsage(chunk.usage);
    for (const choice of chunk.choices) {
      if (choice.delta.role === 'assistant') roles += 1;
      texts[choice.index] = (texts[choice.index] || '') + (choice.delta.content || '');
    }
  }
  return { whole, texts, roles };
}

function sameTexts(result, what) {
  const whole = result.whole.choices.map((c) => (c.text !== undefined ? c.text : c.message.content));
  check(JSON.stringify(whole) === JSON.stringify(result.texts), `${what}: streamed text equals non-streamed`,
    `streamed ${JSON.stringify(result.texts)} vs ${JSON.stringify(whole)}`);
}

async function main() {
  const before = await counters();

  const models = await client.models.list();
  check(models.data.some((m) => m.id === model), 'models.list names the model', JSON.stringify(models.data));

  // Greedy, n = 2, logprobs: both samples are the golden continuation.
  const maxTokens = golden.greedy.output_ids.length;
  const greedy = await completionBoth({
    prompt: golden.prompt, max_tokens: maxTokens, temperature: 0, n: 2, logprobs: 2,
  });
  sameTexts(greedy, 'completions greedy n=2 logprobs=2');
  for (const choice of greedy.whole.choices) {
    check(choice.text === golden.greedy.output_text, `completions choice ${choice.index} is the golden text`,
      JSON.stringify(choice.text));
    check(choice.logprobs.tokens.length === maxTokens && choice.logprobs.top_logprobs.length === maxTokens,
      `completions choice ${choice.index} has a logprob per token`, JSON.stringify(choice.logprobs).slice(0, 200));
    check(choice.finish_reason === 'length', `completions choice ${choice.index} finish_reason length`, choice.finish_reason);
  }
  check(greedy.tokens === 2 * maxTokens, 'streamed logprobs: one per token', greedy.tokens);
  check(greedy.whole.usage.completion_tokens === 2 * maxTokens, 'usage counts both samples',
    JSON.stringify(greedy.whole.usage));

  // A seed makes sampling repeatable: streamed equals non-streamed.
  const seeded = await completionBoth({
    prompt: golden.prompt, max_tokens: 40, temperature: 0.9, top_p: 0.95, seed: 1234, n: 2,
  });
  sameTexts(seeded, 'completions seed=1234 temperature=0.9 n=2');
  check(seeded.whole.choices[0].text !== seeded.whole.choices[1].text, 'the two seeded samples differ',
    JSON.stringify(seeded.texts));

  // Stop strings: the golden text cut before its first " was".
  const stop = ' was';
  const cut = golden.greedy.output_text.indexOf(stop);
  if (cut > 0) {
    const stopped = await completionBoth({
      prompt: golden.prompt, max_tokens: maxTokens, temperature: 0, stop: [stop, 'zzzz'],
    });
    sameTexts(stopped, 'completions with stop strings');
    check(stopped.whole.choices[0].text === golden.greedy.output_text.slice(0, cut),
      'the text ends before the stop string', JSON.stringify(stopped.whole.choices[0].text));
    check(stopped.whole.choices[0].finish_reason === 'stop', 'finish_reason stop', stopped.whole.choices[0].finish_reason);
  } else {
    check(false, `the golden text contains "${stop}"`, golden.greedy.output_text);
  }

  // Chat, if the server renders this model's chat template.
  let chatAvailable = true;
  try {
    const probe = await client.chat.completions.create({
      model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 1,
    });
    countUsage(probe.usage);
  } catch (e) {
    if (e.status === 400 && e.code === 'chat_template_unavailable') {
      chatAvailable = false;
      console.log(`SKIPPED-PART: chat completions: the server renders no chat template yet (${e.message})`);
    } else {
      throw e;
    }
  }
  if (chatAvailable) {
    const messages = [{ role: 'system', content: 'You tell stories.' }, { role: 'user', content: 'Once upon a time' }];
    const chat = await chatBoth({
      messages, max_completion_tokens: 30, temperature: 0.8, seed: 7, n: 2, logprobs: true, top_logprobs: 2,
      stop: ['.'],
    });
    sameTexts(chat, 'chat seed=7 n=2 logprobs stop');
    check(chat.roles === 2, 'each streamed choice opens with role assistant', chat.roles);
    for (const choice of chat.whole.choices) {
      check(choice.message.role === 'assistant', `chat choice ${choice.index} role`, choice.message.role);
      check(!choice.message.content.includes('.'), `chat choice ${choice.index} stops before "."`, choice.message.content);
      check(choice.logprobs.content.every((t) => t.top_logprobs.length === 2 && Array.isArray(t.bytes)),
        `chat choice ${choice.index} logprobs.content`, JSON.stringify(choice.logprobs).slice(0, 200));
    }
    const greedyChat = await chatBoth({ messages, max_tokens: 20, temperature: 0 });
    sameTexts(greedyChat, 'chat greedy');
  }

  // Errors reach the SDK as APIError with OpenAI's fields.
  try {
    await client.completions.create({ model, prompt: 'x', max_tokens: -1 });
    check(false, 'max_tokens -1 is refused', 'no error');
  } catch (e) {
    check(e.status === 400 && e.param === 'max_tokens' && /got -1/.test(e.message),
      'max_tokens -1: 400 naming the field and value', `${e.status} ${e.param} ${e.message}`);
  }
  try {
    await client.completions.create({ model: 'no-such-model', prompt: 'x' });
    check(false, 'an unknown model is refused', 'no error');
  } catch (e) {
    check(e.status === 404 && e.code === 'model_not_found', 'unknown model: 404 model_not_found', `${e.status} ${e.code}`);
  }

  const after = await counters();
  check(after.prompt - before.prompt === usage.prompt, 'prompt usage equals kestrel_prompt_tokens_total',
    `usage ${usage.prompt}, metrics ${after.prompt - before.prompt}`);
  check(after.completion - before.completion === usage.completion,
    'completion usage equals kestrel_generation_tokens_total',
    `usage ${usage.completion}, metrics ${after.completion - before.completion}`);
  console.log(`summary: ${failures} failed; usage prompt=${usage.prompt} completion=${usage.completion}; chat ${chatAvailable ? 'tested' : 'skipped'}`);
  process.exit(failures === 0 ? 0 : 1);
}

main().catch((e) => {
  console.log(`FAIL: ${e.stack || e}`);
  process.exit(1);
});
