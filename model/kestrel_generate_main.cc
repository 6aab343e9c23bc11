// kestrel-generate: offline completion from a model directory, for
// debugging and golden checks without a server.
//
//   kestrel-generate --model=DIR --prompt-ids=1,403,407,261,378 --max-tokens=60 --json
//   kestrel-generate --model=DIR --prompt="Once upon a time" --temperature=0.8 --seed=1
//   kestrel-generate --model=DIR --prompt-ids=... --max-tokens=0 --logits-out=logits.jsonl
//
// Flags may be spelled with dashes or underscores. --logits-out writes one
// JSON line {"pos", "token", "logits"} per prompt position (the format of
// the golden logits files).
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "model/generate.h"
#include "model/model_runner.h"
#include "model/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, model, "", "Model directory (config.json, safetensors, tokenizer.json)");
ABSL_FLAG(std::string, prompt, "", "Prompt text (needs tokenizer.json)");
ABSL_FLAG(std::string, prompt_ids, "", "Prompt token ids, comma separated (instead of --prompt)");
ABSL_FLAG(int32_t, max_tokens, 16, "Tokens to generate");
ABSL_FLAG(float, temperature, 1.0f, "0 = greedy");
ABSL_FLAG(int32_t, top_k, 0, "0 = disabled");
ABSL_FLAG(float, top_p, 1.0f, "Nucleus sampling, (0, 1]");
ABSL_FLAG(float, min_p, 0.0f, "Min-p sampling, [0, 1]");
ABSL_FLAG(float, repetition_penalty, 1.0f, "HF repetition penalty, 1 = off");
ABSL_FLAG(float, presence_penalty, 0.0f, "OpenAI presence penalty");
ABSL_FLAG(float, frequency_penalty, 0.0f, "OpenAI frequency penalty");
ABSL_FLAG(std::string, logit_bias, "", "token:bias pairs, comma separated");
ABSL_FLAG(int64_t, seed, -1, "Sampling seed; -1 = random");
ABSL_FLAG(int32_t, logprobs, -1, "Report logprobs with N alternatives (-1 = off)");
ABSL_FLAG(bool, ignore_eos, false, "Keep generating after an eos token");
ABSL_FLAG(bool, json, false, "Print one JSON object (ids, text, logprobs)");
ABSL_FLAG(std::string, logits_out, "", "Write every prompt position's logits as JSON lines");
ABSL_FLAG(int32_t, threads, 0, "Compute threads (0 = one per CPU)");
ABSL_FLAG(int64_t, kv_cache_mb, 512, "KV cache budget in MiB");
ABSL_FLAG(bool, mmap, false, "Map weights from the file instead of copying to anonymous memory");
ABSL_FLAG(std::string, kv_cache_dtype, "auto",
          "KV cache element type: auto (BF16 for BF16 checkpoints, else F32), f32 or bf16");
ABSL_FLAG(bool, bf16_dot, true,
          "BF16 checkpoints: bf16 dot products (activations rounded to bf16); false = exact");

namespace kestrel::model {
namespace {

using json = nlohmann::json;

absl::StatusOr<std::vector<int32_t>> ParseIds(const std::string& text) {
  std::vector<int32_t> ids;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    int32_t id;
    if (!absl::SimpleAtoi(part, &id)) {
      return absl::InvalidArgumentError("--prompt-ids: not an integer: " + std::string(part));
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
      return absl::InvalidArgumentError("--logit-bias: expected token:bias, got " + std::string(part));
    }
    out.emplace_back(id, bias);
  }
  return out;
}

absl::Status Run() {
  const std::string dir = absl::GetFlag(FLAGS_model);
  if (dir.empty()) return absl::InvalidArgumentError("--model is required");
  std::unique_ptr<tokenizer::Tokenizer> tok;
  if (std::filesystem::exists(std::filesystem::path(dir) / "tokenizer.json")) {
    auto t = tokenizer::Tokenizer::LoadFromDirectory(dir, {});
    if (t.ok()) {
      tok = std::move(*t);
    } else if (absl::GetFlag(FLAGS_prompt_ids).empty()) {
      return t.status();
    }
  }

  GenerationRequest req;
  if (!absl::GetFlag(FLAGS_prompt_ids).empty()) {
    ASSIGN_OR_RETURN(req.prompt_ids, ParseIds(absl::GetFlag(FLAGS_prompt_ids)));
  } else if (!absl::GetFlag(FLAGS_prompt).empty()) {
    if (tok == nullptr) return absl::InvalidArgumentError("--prompt needs tokenizer.json in --model");
    ASSIGN_OR_RETURN(req.prompt_ids, tok->Encode(absl::GetFlag(FLAGS_prompt), {}));
  } else {
    return absl::InvalidArgumentError("give --prompt or --prompt-ids");
  }
  req.max_tokens = absl::GetFlag(FLAGS_max_tokens);
  req.stop_at_eos = !absl::GetFlag(FLAGS_ignore_eos);
  req.prompt_logits = !absl::GetFlag(FLAGS_logits_out).empty();
  SamplingParams& s = req.sampling;
  s.temperature = absl::GetFlag(FLAGS_temperature);
  s.top_k = absl::GetFlag(FLAGS_top_k);
  s.top_p = absl::GetFlag(FLAGS_top_p);
  s.min_p = absl::GetFlag(FLAGS_min_p);
  s.repetition_penalty = absl::GetFlag(FLAGS_repetition_penalty);
  s.presence_penalty = absl::GetFlag(FLAGS_presence_penalty);
  s.frequency_penalty = absl::GetFlag(FLAGS_frequency_penalty);
  ASSIGN_OR_RETURN(s.logit_bias, ParseBias(absl::GetFlag(FLAGS_logit_bias)));
  if (absl::GetFlag(FLAGS_seed) >= 0) s.seed = static_cast<uint64_t>(absl::GetFlag(FLAGS_seed));
  s.logprobs = absl::GetFlag(FLAGS_logprobs) >= 0;
  s.top_logprobs = std::max(0, absl::GetFlag(FLAGS_logprobs));

  ModelRunner::Options options;
  options.model_dir = dir;
  options.num_threads = absl::GetFlag(FLAGS_threads);
  options.kv_cache_bytes = static_cast<uint64_t>(absl::GetFlag(FLAGS_kv_cache_mb)) << 20;
  if (absl::GetFlag(FLAGS_mmap)) options.storage = SafetensorsCheckpoint::Storage::kFileMmap;
  options.bf16_dot = absl::GetFlag(FLAGS_bf16_dot);
  ASSIGN_OR_RETURN(options.kv_cache_dtype, ParseKvCacheDType(absl::GetFlag(FLAGS_kv_cache_dtype)));
  ASSIGN_OR_RETURN(std::unique_ptr<ModelRunner> runner, ModelRunner::Create(options));
  const std::vector<GenerationRequest> reqs = {req};
  GenerateStats stats;
  ASSIGN_OR_RETURN(std::vector<GenerationResult> results, Generate(*runner, reqs, {}, &stats));
  const GenerationResult& r = results[0];

  if (req.prompt_logits) {
    std::ofstream out(absl::GetFlag(FLAGS_logits_out));
    const int64_t vocab = runner->config().vocab_size;
    for (size_t p = 0; p < req.prompt_ids.size(); ++p) {
      json line = {{"pos", p}, {"token", req.prompt_ids[p]},
                   {"logits", std::vector<float>(r.prompt_logits.begin() + p * vocab,
                                                 r.prompt_logits.begin() + (p + 1) * vocab)}};
      out << line.dump() << "\n";
    }
    if (!out) return absl::InternalError("cannot write --logits-out file");
  }

  std::string text, output_text;
  if (tok != nullptr) {
    std::vector<int32_t> all = req.prompt_ids;
    all.insert(all.end(), r.output_ids.begin(), r.output_ids.end());
    ASSIGN_OR_RETURN(text, tok->Decode(all, /*skip_special_tokens=*/true));
    ASSIGN_OR_RETURN(output_text, tok->Decode(r.output_ids, /*skip_special_tokens=*/true));
  }
  if (absl::GetFlag(FLAGS_json)) {
    json j = {{"prompt_ids", req.prompt_ids}, {"output_ids", r.output_ids},
              {"finish_reason", r.finish_reason},
              {"timing",
               {{"prefill_tokens", stats.prefill_tokens},
                {"prefill_seconds", stats.prefill_seconds},
                {"decode_tokens", stats.decode_tokens},
                {"decode_seconds", stats.decode_seconds}}}};
    if (tok != nullptr) {
      j["text"] = text;
      j["output_text"] = output_text;
    }
    if (s.logprobs) {
      json lps = json::array();
      for (const SampledToken& t : r.tokens) {
        json top = json::array();
        for (const TokenLogprob& a : t.top_logprobs) top.push_back({{"token", a.token}, {"logprob", a.logprob}});
        lps.push_back({{"token", t.token}, {"logprob", t.logprob}, {"top_logprobs", top}});
      }
      j["logprobs"] = lps;
    }
    // Invalid UTF-8 in text cannot occur (the decoder emits whole
    // characters), but replace rather than throw if it ever does.
    std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
  } else {
    if (tok != nullptr) std::cout << text << "\n";
    std::cout << "output_ids:";
    for (int32_t id : r.output_ids) std::cout << " " << id;
    std::cout << "\nfinish_reason: " << r.finish_reason << "\n";
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace kestrel::model

int main(int argc, char** argv) {
  // Accept --max-tokens as well as --max_tokens: absl flag names cannot
  // contain dashes.
  std::vector<std::string> args(argv, argv + argc);
  std::vector<char*> fixed;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string& a = args[i];
    if (i > 0 && a.rfind("--", 0) == 0) {
      const size_t end = std::min(a.find('='), a.size());
      for (size_t c = 2; c < end; ++c) {
        if (a[c] == '-') a[c] = '_';
      }
    }
    fixed.push_back(a.data());
  }
  absl::ParseCommandLine(static_cast<int>(fixed.size()), fixed.data());
  absl::Status s = kestrel::model::Run();
  if (!s.ok()) {
    std::fprintf(stderr, "kestrel-generate: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
