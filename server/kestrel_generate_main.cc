// kestrel-generate: offline completion from a model directory, for
// debugging and golden checks without a server. It runs on the serving
// engine (engine/offline.h: the same scheduler, executor and backend
// sampling as kestrel-server), stepped on this thread.
//
//   kestrel-generate --model=DIR --prompt-ids=1,403,407,261,378 --max-tokens=60 --json
//   kestrel-generate --model=DIR --prompt="Once upon a time" --temperature=0.8 --seed=1
//   kestrel-generate --model=DIR --prompt-ids=... --max-tokens=1 --logits-out=logits.jsonl
//
// --logits-out writes one JSON line {"pos", "token", "logits"} per prompt
// position (the format of the golden logits files).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/flags.h"
#include "common/status_macros.h"
#include "engine/offline.h"
#include "nlohmann/json.hpp"
#include "server/model_flags.h"
#include "server/model_loader.h"

namespace kestrel::server {
namespace {

using json = nlohmann::json;

struct Flags {
  std::string model;
  std::string prompt;
  std::string prompt_ids;
  int32_t max_tokens = 16;
  float temperature = 1.0f;
  int32_t top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  std::string logit_bias;
  int64_t seed = -1;
  int32_t logprobs = -1;
  bool ignore_eos = false;
  bool json = false;
  std::string logits_out;
  ModelFlags placement;
  SpeculativeFlags speculative;
};

absl::StatusOr<std::vector<int32_t>> ParseIds(const std::string& text) {
  std::vector<int32_t> ids;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    int32_t id;
    if (!absl::SimpleAtoi(part, &id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--prompt-ids: not an integer: \"", std::string(part), "\""));
    }
    ids.push_back(id);
  }
  if (ids.empty()) return absl::InvalidArgumentError("--prompt-ids: no ids");
  return ids;
}

absl::StatusOr<std::vector<std::pair<int32_t, float>>> ParseBias(const std::string& text) {
  std::vector<std::pair<int32_t, float>> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(part, ':');
    int32_t id;
    float bias;
    if (!absl::SimpleAtoi(kv.first, &id) || !absl::SimpleAtof(kv.second, &bias)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--logit-bias: expected token:bias, got \"", std::string(part), "\""));
    }
    out.emplace_back(id, bias);
  }
  return out;
}

// The request the flags describe; errors name the flag (usage errors).
absl::StatusOr<engine::GenerateParams> Request(const Flags& f,
                                               const tokenizer::Tokenizer* tokenizer) {
  engine::GenerateParams p;
  if (!f.prompt_ids.empty()) {
    ASSIGN_OR_RETURN(p.prompt_ids, ParseIds(f.prompt_ids));
  } else if (!f.prompt.empty()) {
    if (tokenizer == nullptr) {
      return absl::InvalidArgumentError("--prompt needs tokenizer.json in --model");
    }
    ASSIGN_OR_RETURN(p.prompt_ids, tokenizer->Encode(f.prompt, {}));
  } else {
    return absl::InvalidArgumentError("give --prompt or --prompt-ids");
  }
  p.max_tokens = f.max_tokens;
  p.ignore_eos = f.ignore_eos;
  p.return_prompt_logits = !f.logits_out.empty();
  model::SamplingParams& s = p.sampling;
  s.temperature = f.temperature;
  s.top_k = f.top_k;
  s.top_p = f.top_p;
  s.min_p = f.min_p;
  s.repetition_penalty = f.repetition_penalty;
  s.presence_penalty = f.presence_penalty;
  s.frequency_penalty = f.frequency_penalty;
  ASSIGN_OR_RETURN(s.logit_bias, ParseBias(f.logit_bias));
  if (f.seed >= 0) s.seed = static_cast<uint64_t>(f.seed);
  s.logprobs = f.logprobs >= 0;
  s.top_logprobs = std::max(0, f.logprobs);
  return p;
}

// OpenAI's names: EOS is a "stop" too.
const char* FinishName(engine::FinishReason reason) {
  return reason == engine::FinishReason::kEos ? "stop" : engine::FinishReasonLabel(reason);
}

int Run(const Flags& f, const FlagSet& flags) {
  if (f.model.empty()) return flags.UsageError("--model is required");
  if (std::string e = CheckModelFlags(f.placement); !e.empty()) return flags.UsageError(e);
  if (std::string e = CheckSpeculativeFlags(f.speculative); !e.empty()) {
    return flags.UsageError(e);
  }
  auto fail = [&](const absl::Status& s) {
    std::fprintf(stderr, "%s: %s\n", flags.program().c_str(), std::string(s.message()).c_str());
    return kExitRuntimeError;
  };

  ModelLoadOptions load;
  load.model = f.model;
  ApplyModelFlags(f.placement, load);
  load.require_tokenizer = f.prompt_ids.empty();
  absl::StatusOr<LoadedModel> loaded = LoadModel(load);
  if (!loaded.ok()) return fail(loaded.status());
  const tokenizer::Tokenizer* tok = loaded->tokenizer.get();

  absl::StatusOr<engine::GenerateParams> request = Request(f, tok);
  if (!request.ok()) return flags.UsageError(std::string(request.status().message()));
  const std::vector<int32_t> prompt_ids = request->prompt_ids;
  engine::EngineOptions options;
  options.eos_token_ids = loaded->eos_token_ids;
  options.request_log = engine::RequestLogFormat::kOff;
  ApplySpeculativeFlags(f.speculative, options);
  absl::StatusOr<std::unique_ptr<engine::OfflineEngine>> llm =
      engine::OfflineEngine::Create(options, std::move(loaded->executor), tok);
  if (!llm.ok()) return fail(llm.status());
  absl::StatusOr<size_t> index = (*llm)->Add(*std::move(request));
  // A request the model cannot take is a bad flag value (--top-p=1.5, a
  // token id beyond the vocabulary, ...).
  if (!index.ok()) return flags.UsageError(std::string(index.status().message()));

  int64_t prefill_tokens = 0, decode_tokens = 0, decode_steps = 0;
  int64_t draft_tokens = 0, accepted_draft_tokens = 0;
  double prefill_seconds = 0, decode_seconds = 0;
  while ((*llm)->has_work()) {
    const engine::EngineCore::StepStats step = (*llm)->Step();
    prefill_tokens += step.prefill_tokens;
    decode_tokens += step.decode_tokens;
    decode_steps += step.decode_tokens > 0;
    draft_tokens += step.draft_tokens;
    accepted_draft_tokens += step.accepted_draft_tokens;
    (step.decode_tokens > 0 ? decode_seconds : prefill_seconds) +=
        absl::ToDoubleSeconds(step.duration);
  }
  const engine::OfflineResult& result = (*llm)->result(*index);
  const engine::OfflineSample& r = result.samples.at(0);
  if (!r.status.ok()) return fail(r.status);

  if (!f.logits_out.empty()) {
    std::ofstream out(f.logits_out);
    const size_t vocab = static_cast<size_t>((*llm)->core().vocab_size());
    for (size_t p = 0; p < prompt_ids.size() && (p + 1) * vocab <= result.prompt_logits.size(); ++p) {
      json line = {{"pos", p}, {"token", prompt_ids[p]},
                   {"logits", std::vector<float>(result.prompt_logits.begin() + p * vocab,
                                                 result.prompt_logits.begin() + (p + 1) * vocab)}};
      out << line.dump() << "\n";
    }
    if (!out) return fail(absl::InternalError(absl::StrCat("cannot write ", f.logits_out)));
  }

  std::string text;
  if (tok != nullptr) {
    std::vector<int32_t> all = prompt_ids;
    all.insert(all.end(), r.token_ids.begin(), r.token_ids.end());
    absl::StatusOr<std::string> decoded = tok->Decode(all, /*skip_special_tokens=*/true);
    if (!decoded.ok()) return fail(decoded.status());
    text = *decoded;
  }
  if (f.json) {
    json j = {{"prompt_ids", prompt_ids}, {"output_ids", r.token_ids},
              {"finish_reason", FinishName(r.reason)},
              {"timing",
               {{"prefill_tokens", prefill_tokens},
                {"prefill_seconds", prefill_seconds},
                {"decode_tokens", decode_tokens},
                {"decode_seconds", decode_seconds},
                // Speculative decoding: decode_tokens counts verified drafts too.
                {"decode_steps", decode_steps},
                {"draft_tokens", draft_tokens},
                {"accepted_draft_tokens", accepted_draft_tokens}}}};
    if (tok != nullptr) {
      j["text"] = text;
      j["output_text"] = r.text;
    }
    if (f.logprobs >= 0) {
      json lps = json::array();
      for (const model::SampledToken& t : r.logprobs) {
        json top = json::array();
        for (const model::TokenLogprob& a : t.top_logprobs) {
          top.push_back({{"token", a.token}, {"logprob", a.logprob}});
        }
        lps.push_back({{"token", t.token}, {"logprob", t.logprob}, {"top_logprobs", top}});
      }
      j["logprobs"] = lps;
    }
    // The decoder emits whole characters; replace rather than throw if an
    // invalid byte ever gets through.
    std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
  } else {
    if (tok != nullptr) std::cout << text << "\n";
    std::cout << "output_ids:";
    for (int32_t id : r.token_ids) std::cout << " " << id;
    std::cout << "\nfinish_reason: " << FinishName(r.reason) << "\n";
  }
  return kExitOk;
}

}  // namespace
}  // namespace kestrel::server

int main(int argc, char** argv) {
  kestrel::server::Flags f;
  kestrel::FlagSet flags("kestrel-generate", "",
                         "Offline completion from a model directory, on the serving engine.");
  flags.Section("Model");
  flags.Add("model", &f.model, "DIR|demo|random",
            "Model directory (config.json, safetensors, tokenizer.json), or a built-in model");
  DeclareModelFlags(flags, f.placement);
  flags.Section("Speculative decoding");
  DeclareSpeculativeFlags(flags, f.speculative);
  flags.Section("Request");
  flags.Add("prompt", &f.prompt, "TEXT", "Prompt text (needs tokenizer.json)");
  flags.Add("prompt-ids", &f.prompt_ids, "IDS", "Prompt token ids, comma separated");
  flags.Add("max-tokens", &f.max_tokens, "N", "Tokens to generate");
  flags.Add("temperature", &f.temperature, "T", "0 = greedy");
  flags.Add("top-k", &f.top_k, "K", "Keep the K most likely tokens; 0 = all");
  flags.Add("top-p", &f.top_p, "P", "Nucleus sampling, (0, 1]");
  flags.Add("min-p", &f.min_p, "P", "Drop tokens below P times the most likely, [0, 1]");
  flags.Add("repetition-penalty", &f.repetition_penalty, "X", "HF repetition penalty; 1 = off");
  flags.Add("presence-penalty", &f.presence_penalty, "X", "OpenAI presence penalty, [-2, 2]");
  flags.Add("frequency-penalty", &f.frequency_penalty, "X", "OpenAI frequency penalty, [-2, 2]");
  flags.Add("logit-bias", &f.logit_bias, "ID:BIAS,...", "Added to the listed tokens' logits");
  flags.Add("seed", &f.seed, "N", "Sampling seed").DefaultText("random");
  flags.Add("logprobs", &f.logprobs, "N",
            "Report each token's logprob and N alternatives; -1 = off");
  flags.Add("ignore-eos", &f.ignore_eos, "Keep generating after an EOS token");
  flags.Section("Output");
  flags.Add("json", &f.json, "Print one JSON object (ids, text, logprobs, timing)");
  flags.Add("logits-out", &f.logits_out, "FILE",
            "Write every prompt position's logits as JSON lines");
  const kestrel::ParsedArgs args = flags.ParseOrExit(argc, argv);
  if (!args.positional.empty()) {
    return flags.UsageError("unexpected argument \"" + args.positional[0] + "\"");
  }
  return kestrel::server::Run(f, flags);
}
