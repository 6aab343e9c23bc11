// The offline engine over a real model (the serving engine's core,
// scheduler, worker executor and backend sampling): stories260K's golden
// greedy output, batch independence under chunked prefill, prompt logits,
// logprobs, EOS, a request that cannot fit, and synthetic architectures.
#include "engine/offline.h"

#include <cstdlib>
#include <fstream>

#include <catch2/catch.hpp>

#include "engine/offline_test_util.h"
#include "engine/worker_executor.h"
#include "model/safetensors.h"
#include "model/safetensors_writer.h"
#include "model/synthetic.h"
#include "model/weights.h"
#include "nlohmann/json.hpp"
#include "testing/shared_data.h"

namespace kestrel::engine {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using model::KvCacheDType;

using testing::Golden;
using testing::Llm;
using testing::ReadGolden;

Llm Make(const fs::path& dir, KvCacheDType kv_dtype = KvCacheDType::kAuto,
         EngineOptions options = {}, uint64_t kv_bytes = 16ull << 20) {
  return testing::MakeLlm(dir, kv_dtype, std::move(options), kv_bytes);
}

GenerateParams Greedy(const Golden& g) {
  GenerateParams p;
  p.prompt_ids = g.prompt_ids;
  p.sampling.temperature = 0.0f;
  p.max_tokens = g.max_tokens;
  p.ignore_eos = true;
  return p;
}

std::vector<OfflineResult> Run(Llm& llm, std::vector<GenerateParams> requests) {
  auto res = llm.engine->Generate(std::move(requests));
  REQUIRE(res.ok());
  for (const OfflineResult& r : *res) REQUIRE(r.finished);
  return std::move(*res);
}

const std::vector<int32_t>& Ids(const OfflineResult& r) { return r.samples.at(0).token_ids; }

TEST_CASE("stories260K greedy generation matches golden output_ids", "[offline][golden]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  const Golden g = ReadGolden(dir);
  REQUIRE(g.max_tokens == 60);
  Llm llm = Make(dir);
  const auto res = Run(llm, {Greedy(g)});
  CHECK(Ids(res[0]) == g.output_ids);
  CHECK(res[0].samples[0].reason == FinishReason::kLength);
  CHECK(res[0].samples[0].status.ok());
}

TEST_CASE("a BF16 KV cache keeps stories260K's greedy output", "[offline][golden]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  const Golden g = ReadGolden(dir);
  Llm f32 = Make(dir);
  CHECK(f32.runner().kv_cache_dtype() == kernels::DType::kF32);  // auto on F32 weights
  Llm bf16 = Make(dir, KvCacheDType::kBF16);
  CHECK(bf16.runner().kv_cache_dtype() == kernels::DType::kBF16);
  // Same budget, half the bytes per block.
  CHECK(bf16.runner().num_kv_blocks() == 2 * f32.runner().num_kv_blocks());
  CHECK(Ids(Run(bf16, {Greedy(g)})[0]) == g.output_ids);
}

// Seven other prompts of different lengths arriving at different steps,
// greedy and seeded, so the golden request decodes beside prefill chunks.
std::vector<GenerateParams> Crowd(int32_t vocab) {
  std::vector<GenerateParams> reqs;
  const int lengths[] = {3, 17, 9, 33, 1, 24, 12};
  for (int i = 0; i < 7; ++i) {
    GenerateParams r;
    r.prompt_ids.push_back(1);
    for (int t = 1; t < lengths[i]; ++t) r.prompt_ids.push_back((t * 31 + i * 7) % (vocab - 3) + 3);
    r.sampling = i % 2 == 0 ? model::SamplingParams{.temperature = 0.0f}
                            : model::SamplingParams{.temperature = 1.0f, .top_k = 20,
                                                    .seed = uint64_t(i)};
    r.max_tokens = 10 + 7 * i;
    r.ignore_eos = true;
    reqs.push_back(r);
  }
  return reqs;
}

TEST_CASE("batch independence: greedy and seeded requests", "[offline][golden]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  const Golden g = ReadGolden(dir);
  GenerateParams sampled = Greedy(g);
  sampled.sampling = {.temperature = 0.8f, .top_p = 0.9f, .seed = 2024};
  Llm alone = Make(dir);
  const auto alone_greedy = Run(alone, {Greedy(g)});
  const auto alone_sampled = Run(alone, {sampled});

  // A 64-token budget splits prompts into chunks that share steps with the
  // golden request's decodes; the others arrive every other step.
  Llm crowd = Make(dir, KvCacheDType::kAuto, {.max_num_batched_tokens = 64, .max_num_seqs = 64});
  OfflineEngine& e = *crowd.engine;
  std::vector<GenerateParams> others = Crowd(512);
  auto golden = e.Add(Greedy(g));
  REQUIRE(golden.ok());
  e.Step();
  auto seeded = e.Add(sampled);
  REQUIRE(seeded.ok());
  std::vector<size_t> indices;
  for (size_t i = 0; i < others.size(); ++i) {
    auto index = e.Add(others[i]);
    REQUIRE(index.ok());
    indices.push_back(*index);
    e.Step();
    e.Step();
  }
  while (e.has_work()) e.Step();
  CHECK(Ids(e.result(*golden)) == g.output_ids);
  CHECK(Ids(e.result(*seeded)) == Ids(alone_sampled[0]));
  CHECK(Ids(alone_sampled[0]) != Ids(alone_greedy[0]));  // it did sample
  for (size_t index : indices) CHECK(e.result(index).samples[0].token_ids.size() > 0);
}

// Recorded with kestrel-generate at 5553bc7, where each request sampled on
// the host with its own RequestSampler; sampling is now a backend op over
// the whole batch, fed by the same per-request generators. Prompt
// 1,403,407,261,378, 40 tokens.
struct SeededCase {
  model::SamplingParams sampling;
  std::vector<int32_t> before;
};

std::vector<SeededCase> SeededCases() {
  return {
      {{.temperature = 0.8f, .top_p = 0.9f, .seed = 2024},
       {432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 381, 261, 370, 268, 414, 294,
        322, 311, 298, 295, 418, 302, 426, 338, 381, 261, 259, 412, 290, 269, 261, 262, 423, 388,
        268, 414, 294, 426}},
      {{.temperature = 1.0f, .top_k = 20, .seed = 7},
       {432, 322, 261, 279, 411, 411, 427, 282, 295, 433, 432, 383, 286, 261, 282, 414, 418, 333,
        411, 411, 426, 291, 282, 414, 304, 282, 414, 305, 381, 284, 303, 422, 282, 414, 339, 422,
        419, 426, 291, 282}},
      {{.temperature = 0.7f, .min_p = 0.1f, .repetition_penalty = 1.3f, .seed = 11},
       {432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408,
        419, 292, 411, 269, 279, 303, 331, 322, 265, 282, 295, 433, 335, 311, 357, 343, 426, 385,
        328, 432, 358, 394}},
      {{.temperature = 1.2f, .presence_penalty = 0.8f, .frequency_penalty = 0.5f,
        .logit_bias = {{400, 3.0f}, {261, -2.0f}}, .seed = 5},
       {432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408,
        419, 292, 411, 335, 311, 374, 419, 263, 415, 414, 397, 396, 353, 265, 262, 424, 299, 419,
        322, 265, 263, 277}},
  };
}

TEST_CASE("seeded requests draw what the per-request host sampler drew, alone and batched",
          "[offline][golden]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  const std::vector<SeededCase> cases = SeededCases();
  auto request = [](const SeededCase& c) {
    GenerateParams p;
    p.prompt_ids = {1, 403, 407, 261, 378};
    p.sampling = c.sampling;
    p.max_tokens = 40;
    p.ignore_eos = true;
    return p;
  };
  Llm llm = Make(dir);
  for (const SeededCase& c : cases) CHECK(Ids(Run(llm, {request(c)})[0]) == c.before);
  // All four in one batch, beside the crowd of other prompts.
  std::vector<GenerateParams> batch = Crowd(512);
  for (const SeededCase& c : cases) batch.push_back(request(c));
  const auto together = Run(llm, batch);
  for (size_t i = 0; i < cases.size(); ++i) {
    CHECK(Ids(together[together.size() - cases.size() + i]) == cases[i].before);
  }
}

TEST_CASE("BF16 and F16 copies of stories260K give the F32 greedy tokens", "[offline][golden]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  const Golden g = ReadGolden(dir);
  auto ckpt = model::SafetensorsCheckpoint::Load({.dir = dir});
  REQUIRE(ckpt.ok());
  const char* tmp = std::getenv("TEST_TMPDIR");
  for (kernels::DType dtype : {kernels::DType::kBF16, kernels::DType::kF16}) {
    INFO(kernels::DTypeName(dtype));
    const fs::path out = fs::path(tmp != nullptr ? tmp : "/tmp") /
                         (std::string("stories_") + kernels::DTypeName(dtype));
    fs::remove_all(out);
    fs::create_directories(out);
    fs::copy_file(dir / "config.json", out / "config.json");
    std::vector<model::TensorToWrite> tensors;
    for (const model::LoadedTensor& t : (*ckpt)->tensors()) {
      std::vector<float> values(t.nbytes / 4);
      for (size_t i = 0; i < values.size(); ++i) values[i] = kernels::LoadAsF32(t.data, t.dtype, i);
      tensors.push_back({t.name, dtype, t.shape, model::EncodeFloats(values, dtype)});
    }
    REQUIRE(model::WriteSafetensors(out / "model.safetensors", tensors).ok());
    Llm llm = Make(out);
    CHECK(llm.runner().weights().layers()[0].q_proj.dtype == dtype);
    CHECK(Ids(Run(llm, {Greedy(g)})[0]) == g.output_ids);
  }
}

TEST_CASE("prompt logits, logprobs, eos stop, a request that cannot fit", "[offline]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  const Golden g = ReadGolden(dir);
  // A budget of 2 tokens chunks the prompt: its logits still arrive once per
  // position, in order.
  Llm llm = Make(dir, KvCacheDType::kAuto, {.max_num_batched_tokens = 2, .max_num_seqs = 2});
  GenerateParams req = Greedy(g);
  req.return_prompt_logits = true;
  req.max_tokens = 3;
  req.sampling.logprobs = true;
  req.sampling.top_logprobs = 2;
  const auto res = Run(llm, {req});
  REQUIRE(res[0].prompt_logits.size() == g.prompt_ids.size() * 512);
  const OfflineSample& s = res[0].samples[0];
  REQUIRE(s.logprobs.size() == 3);
  CHECK(s.logprobs[0].token == g.output_ids[0]);
  CHECK(s.logprobs[0].top_logprobs[0].token == g.output_ids[0]);  // greedy = most likely
  CHECK(s.logprobs[0].logprob <= 0.0f);
  // The last prompt position's logits are the ones the first token came from.
  const float* last = res[0].prompt_logits.data() + (g.prompt_ids.size() - 1) * 512;
  CHECK(std::max_element(last, last + 512) - last == g.output_ids[0]);

  // With EOS honoured, generation ends at the model's EOS or at the limit.
  GenerateParams stop = Greedy(g);
  stop.ignore_eos = false;
  stop.max_tokens = 200;
  const auto stopped = Run(llm, {stop});
  const OfflineSample& ended = stopped[0].samples[0];
  CHECK(ended.reason == (ended.token_ids.back() == 2 ? FinishReason::kEos : FinishReason::kLength));

  // Two blocks of KV cannot hold the golden request: it is refused with an
  // error, not left waiting forever.
  Llm tiny = Make(dir, KvCacheDType::kF32, {}, 2 * 5 * 2 * 16 * 32 * 4);
  REQUIRE(tiny.runner().num_kv_blocks() == 2);
  const auto full = Run(tiny, {Greedy(g)});
  CHECK(full[0].samples[0].reason == FinishReason::kError);
  CHECK(full[0].samples[0].status.code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("synthetic qwen2/qwen3 checkpoints generate", "[offline]") {
  const char* tmp = std::getenv("TEST_TMPDIR");
  for (const char* preset : {"tiny-qwen2", "tiny-qwen3"}) {
    INFO(preset);
    const fs::path dir = fs::path(tmp != nullptr ? tmp : "/tmp") / (std::string("gen_") + preset);
    auto config = model::SyntheticPresetConfig(preset, kernels::DType::kBF16);
    REQUIRE(config.ok());
    // A small shard limit exercises the sharded layout too.
    REQUIRE(model::WriteSyntheticCheckpoint({.dir = dir, .config_json = *config,
                                             .dtype = kernels::DType::kBF16, .seed = 7,
                                             .max_shard_bytes = 64 << 10})
                .ok());
    REQUIRE(fs::exists(dir / "model.safetensors.index.json"));
    Llm llm = Make(dir);
    GenerateParams req;
    req.prompt_ids = {256, 72, 105};
    req.sampling = {.temperature = 0.7f, .seed = 1};
    req.max_tokens = 12;
    req.ignore_eos = true;
    const auto a = Run(llm, {req});
    const auto b = Run(llm, {req, req});
    CHECK(Ids(a[0]).size() == 12);
    CHECK(Ids(b[0]) == Ids(a[0]));
    CHECK(Ids(b[1]) == Ids(a[0]));
  }
}

}  // namespace
}  // namespace kestrel::engine
