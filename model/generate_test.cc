#include "model/generate.h"

#include <cstdlib>
#include <fstream>

#include <catch2/catch.hpp>

#include "model/safetensors.h"
#include "model/safetensors_writer.h"
#include "model/synthetic.h"
#include "nlohmann/json.hpp"
#include "testing/shared_data.h"

namespace kestrel::model {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct Golden {
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> output_ids;
  int32_t max_tokens = 0;
};

Golden ReadGolden(const fs::path& dir) {
  std::ifstream in(dir / "golden/greedy.json");
  const json j = json::parse(in, nullptr, false);
  REQUIRE(j.is_object());
  Golden g;
  g.prompt_ids = j["prompt_ids"].get<std::vector<int32_t>>();
  g.output_ids = j["greedy"]["output_ids"].get<std::vector<int32_t>>();
  g.max_tokens = j["greedy"]["max_tokens"].get<int32_t>();
  return g;
}

std::unique_ptr<ModelRunner> Runner(const fs::path& dir,
                                    KvCacheDType kv_dtype = KvCacheDType::kAuto) {
  auto r = ModelRunner::Create({.model_dir = dir,
                                .num_threads = 2,
                                .kv_cache_bytes = 16ull << 20,
                                .kv_cache_dtype = kv_dtype});
  REQUIRE(r.ok());
  return std::move(*r);
}

GenerationRequest Greedy(const Golden& g) {
  return {.prompt_ids = g.prompt_ids,
          .sampling = {.temperature = 0.0f},
          .max_tokens = g.max_tokens,
          .stop_at_eos = false};
}

std::vector<GenerationResult> Run(ModelRunner& r, const std::vector<GenerationRequest>& reqs,
                                  GenerateOptions options = {}) {
  auto res = Generate(r, reqs, options);
  REQUIRE(res.ok());
  return std::move(*res);
}

TEST_CASE("stories260K greedy generation matches golden output_ids", "[generate][golden]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  const Golden g = ReadGolden(dir);
  REQUIRE(g.max_tokens == 60);
  auto r = Runner(dir);
  const auto res = Run(*r, {Greedy(g)});
  CHECK(res[0].output_ids == g.output_ids);
  CHECK(res[0].finish_reason == "length");
}

TEST_CASE("a BF16 KV cache keeps stories260K's greedy output", "[generate][golden]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  const Golden g = ReadGolden(dir);
  auto f32 = Runner(dir);
  CHECK(f32->kv_cache_dtype() == kernels::DType::kF32);  // auto on F32 weights
  auto bf16 = Runner(dir, KvCacheDType::kBF16);
  CHECK(bf16->kv_cache_dtype() == kernels::DType::kBF16);
  // Same budget, half the bytes per block.
  CHECK(bf16->num_kv_blocks() == 2 * f32->num_kv_blocks());
  CHECK(Run(*bf16, {Greedy(g)})[0].output_ids == g.output_ids);
}

// Seven other prompts of different lengths arriving at different steps,
// prefills chunked at 8 tokens so they interleave with the golden
// request's decodes.
std::vector<GenerationRequest> Crowd(int32_t vocab) {
  std::vector<GenerationRequest> reqs;
  const int lengths[] = {3, 17, 9, 33, 1, 24, 12};
  for (int i = 0; i < 7; ++i) {
    GenerationRequest r;
    r.prompt_ids.push_back(1);
    for (int t = 1; t < lengths[i]; ++t) r.prompt_ids.push_back((t * 31 + i * 7) % (vocab - 3) + 3);
    r.sampling = i % 2 == 0 ? SamplingParams{.temperature = 0.0f}
                            : SamplingParams{.temperature = 1.0f, .top_k = 20, .seed = uint64_t(i)};
    r.max_tokens = 10 + 7 * i;
    r.arrival_step = i * 2;
    reqs.push_back(r);
  }
  return reqs;
}

TEST_CASE("batch independence: greedy and seeded requests", "[generate][golden]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  const Golden g = ReadGolden(dir);
  auto r = Runner(dir);
  GenerationRequest sampled = Greedy(g);
  sampled.sampling = {.temperature = 0.8f, .top_p = 0.9f, .seed = 2024};

  const auto alone_greedy = Run(*r, {Greedy(g)});
  const auto alone_sampled = Run(*r, {sampled});
  std::vector<GenerationRequest> batch = Crowd(512);
  batch.insert(batch.begin() + 3, Greedy(g));
  batch.push_back(sampled);
  batch.back().arrival_step = 1;
  const auto together = Run(*r, batch, {.prefill_chunk = 8, .max_step_tokens = 64});
  CHECK(together[3].output_ids == g.output_ids);
  CHECK(together[3].output_ids == alone_greedy[0].output_ids);
  CHECK(together.back().output_ids == alone_sampled[0].output_ids);
  CHECK(alone_sampled[0].output_ids != alone_greedy[0].output_ids);  // it did sample
  for (const auto& res : together) CHECK_FALSE(res.output_ids.empty());
}

TEST_CASE("BF16 and F16 copies of stories260K give the F32 greedy tokens", "[generate][golden]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  const Golden g = ReadGolden(dir);
  auto ckpt = SafetensorsCheckpoint::Load({.dir = dir});
  REQUIRE(ckpt.ok());
  const char* tmp = std::getenv("TEST_TMPDIR");
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    INFO(DTypeName(dtype));
    const fs::path out = fs::path(tmp != nullptr ? tmp : "/tmp") / (std::string("stories_") + DTypeName(dtype));
    fs::remove_all(out);
    fs::create_directories(out);
    fs::copy_file(dir / "config.json", out / "config.json");
    std::vector<TensorToWrite> tensors;
    for (const LoadedTensor& t : (*ckpt)->tensors()) {
      std::vector<float> values(t.nbytes / 4);
      for (size_t i = 0; i < values.size(); ++i) values[i] = LoadAsF32(t.data, t.dtype, i);
      tensors.push_back({t.name, dtype, t.shape, EncodeFloats(values, dtype)});
    }
    REQUIRE(WriteSafetensors(out / "model.safetensors", tensors).ok());
    auto r = Runner(out);
    CHECK(r->weights().layers()[0].q_proj.dtype == dtype);
    CHECK(Run(*r, {Greedy(g)})[0].output_ids == g.output_ids);
  }
}

TEST_CASE("prompt logits, eos stop, logprobs, KV exhaustion", "[generate]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  const Golden g = ReadGolden(dir);
  auto r = Runner(dir);
  GenerationRequest req = Greedy(g);
  req.prompt_logits = true;
  req.max_tokens = 3;
  req.sampling.logprobs = true;
  req.sampling.top_logprobs = 2;
  const auto res = Run(*r, {req}, {.prefill_chunk = 2});
  REQUIRE(res[0].prompt_logits.size() == g.prompt_ids.size() * 512);
  REQUIRE(res[0].tokens.size() == 3);
  CHECK(res[0].tokens[0].token == g.output_ids[0]);
  CHECK(res[0].tokens[0].top_logprobs[0].token == g.output_ids[0]);  // greedy = most likely
  CHECK(res[0].tokens[0].logprob <= 0.0f);

  // With the golden continuation's 8th token as "eos", generation stops there.
  GenerationRequest stop = Greedy(g);
  stop.stop_at_eos = true;
  stop.max_tokens = 200;
  auto short_ctx = Run(*r, {stop});
  CHECK(short_ctx[0].finish_reason == (short_ctx[0].output_ids.back() == 2 ? "stop" : "length"));

  auto tiny = ModelRunner::Create({.model_dir = dir, .num_threads = 1,
                                   .kv_cache_bytes = 2 * 5 * 2 * 16 * 32 * 4});
  REQUIRE(tiny.ok());
  const std::vector<GenerationRequest> one = {Greedy(g)};
  auto full = Generate(**tiny, one);
  REQUIRE_FALSE(full.ok());
  CHECK(full.status().code() == absl::StatusCode::kResourceExhausted);
}

TEST_CASE("synthetic qwen2/qwen3 checkpoints generate", "[generate]") {
  const char* tmp = std::getenv("TEST_TMPDIR");
  for (const char* preset : {"tiny-qwen2", "tiny-qwen3"}) {
    INFO(preset);
    const fs::path dir = fs::path(tmp != nullptr ? tmp : "/tmp") / (std::string("gen_") + preset);
    auto config = SyntheticPresetConfig(preset, DType::kBF16);
    REQUIRE(config.ok());
    // A small shard limit exercises the sharded layout too.
    REQUIRE(WriteSyntheticCheckpoint({.dir = dir, .config_json = *config, .dtype = DType::kBF16,
                                      .seed = 7, .max_shard_bytes = 64 << 10})
                .ok());
    REQUIRE(fs::exists(dir / "model.safetensors.index.json"));
    auto r = Runner(dir);
    GenerationRequest req{.prompt_ids = {256, 72, 105}, .sampling = {.temperature = 0.7f, .seed = 1},
                          .max_tokens = 12, .stop_at_eos = false};
    const auto a = Run(*r, {req});
    const auto b = Run(*r, {req, req});
    CHECK(a[0].output_ids.size() == 12);
    CHECK(b[0].output_ids == a[0].output_ids);
    CHECK(b[1].output_ids == a[0].output_ids);
  }
}

}  // namespace
}  // namespace kestrel::model
