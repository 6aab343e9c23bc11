// Holds many Server-Sent Events streams open against kestrel-server's
// OpenAI HTTP API at once and reports the server's threads and memory
// before, while all streams are open, and after (docs/benchmarks.md).
// Not a CI test: a load check to run by hand.
//
//   node benchmarks/sse_streams.js --url=http://127.0.0.1:8000 --pid=$(pidof kestrel-server) \
//       --streams=1000 --max-tokens=480
'use strict';
const fs = require('fs');
const http = require('http');

const args = Object.fromEntries(process.argv.slice(2).map((a) => {
  const [key, ...value] = a.replace(/^--/, '').split('=');
  return [key, value.join('=')];
}));
const url = new URL(args.url || 'http://127.0.0.1:8000');
const streams = Number(args.streams || 1000);
const maxTokens = Number(args['max-tokens'] || 480);
const pid = args.pid;

function serverStatus() {
  if (!pid) return {};
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name) => Number((status.match(new RegExp(`^${name}:\\s+(\\d+)`, 'm')) || [])[1]);
  return { threads: field('Threads'), rss_mib: Math.round(field('VmRSS') / 1024), hwm_mib: Math.round(field('VmHWM') / 1024) };
}

const started = Date.now();
const before = serverStatus();
let open = 0;        // streams that have received their first event
let done = 0;        // streams that ended with [DONE]
let failed = 0;
let events = 0;
let during = null;
let peak = { threads: 0, rss_mib: 0 };

const sampler = setInterval(() => {
  const s = serverStatus();
  peak = { threads: Math.max(peak.threads, s.threads || 0), rss_mib: Math.max(peak.rss_mib, s.rss_mib || 0) };
}, 200);

function finishOne() {
  if (done + failed < streams) return;
  clearInterval(sampler);
  const after = serverStatus();
  console.log(JSON.stringify({
    streams, max_tokens: maxTokens, done, failed, events,
    all_open_after_s: during ? during.at_s : null,
    seconds: (Date.now() - started) / 1000,
    server_before: before, server_all_open: during, server_peak: peak, server_after: after,
  }, null, 1));
}

for (let i = 0; i < streams; i += 1) {
  const body = JSON.stringify({
    prompt: `Stream ${i}: once upon a time`, max_tokens: maxTokens, temperature: 1, seed: i,
    ignore_eos: true, stream: true,
  });
  const request = http.request({
    host: url.hostname, port: url.port, path: '/v1/completions', method: 'POST', agent: false,
    headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
  }, (response) => {
    let first = true;
    let sawDone = false;
    let tail = '';
    response.on('data', (chunk) => {
      if (first) {
        first = false;
        open += 1;
        if (open === streams) during = { ...serverStatus(), at_s: (Date.now() - started) / 1000 };
      }
      const text = tail + chunk.toString();
      const blocks = text.split('\n\n');
      tail = blocks.pop();
      for (const block of blocks) {
        if (block === 'data: [DONE]') sawDone = true;
        else events += 1;
      }
    });
    response.on('end', () => {
      if (sawDone) done += 1; else failed += 1;
      finishOne();
    });
    response.on('error', () => { failed += 1; finishOne(); });
  });
  request.on('error', (e) => { failed += 1; console.error(`stream ${i}: ${e.message}`); finishOne(); });
  request.end(body);
}
