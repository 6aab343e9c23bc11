// The whole model forward on the CUDA backend against the independent
// reference (stories260K goldens) and against the CPU backend on the same
// weights. Built twice (bazel/cuda.bzl): against the CUDA emulation, where
// it runs in CI under three orders of the emulated threads, and against the
// real CUDA runtime as cuda_runner_test_gpu for the GPU check
// (scripts/gpu-check).
#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>
#include <memory>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/cuda_backend.h"
#include "model/model_runner.h"
#include "model/weights.h"
#include "nlohmann/json.hpp"
#include "testing/shared_data.h"

namespace kestrel::model {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// A backend and a runner over it (the runner is destroyed first).
struct Fixture {
  std::unique_ptr<kernels::Backend> backend;
  std::unique_ptr<ModelRunner> runner;
  ModelRunner* operator->() { return runner.get(); }
};

Fixture Make(const fs::path& dir, bool cuda, KvCacheDType kv = KvCacheDType::kF32) {
  auto weights = ModelWeights::Load({.dir = dir});
  REQUIRE(weights.ok());
  Fixture f;
  if (cuda) {
    auto backend = cuda::CreateCudaBackend({.device = 0});
    REQUIRE(backend.ok());
    f.backend = std::move(*backend);
  } else {
    auto backend = kernels::cpu::CreateCpuBackend({.num_threads = 1});
    REQUIRE(backend.ok());
    f.backend = std::move(*backend);
  }
  auto runner = ModelRunner::Create({.kv_cache_bytes = 8ull << 20, .kv_cache_dtype = kv},
                                    std::move(*weights), f.backend.get());
  REQUIRE(runner.ok());
  f.runner = std::move(*runner);
  return f;
}

float MaxAbsDiff(std::span<const float> a, std::span<const float> b) {
  REQUIRE(a.size() == b.size());
  float m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

// Every position's logits for `tokens` fed in chunks of the given sizes.
std::vector<std::vector<float>> ChunkedLogits(ModelRunner& r, const std::vector<int32_t>& tokens,
                                              const std::vector<int>& chunks) {
  const std::vector<int32_t> blocks = {5, 2, 9, 0};  // any blocks will do
  std::vector<std::vector<float>> logits;
  int pos = 0;
  StepOutput out;
  for (int n : chunks) {
    SequenceInput in{.token_ids = {tokens.data() + pos, static_cast<size_t>(n)},
                     .position = pos,
                     .block_table = blocks,
                     .logits = LogitsMode::kAll};
    const absl::Status s = r.Step({&in, 1}, &out);
    REQUIRE(s.ok());
    for (int i = 0; i < n; ++i) {
      const auto row = out.row(i);
      logits.emplace_back(row.begin(), row.end());
    }
    pos += n;
  }
  return logits;
}

TEST_CASE("CUDA forward: stories260K logits match the golden file", "[cuda][golden]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  std::vector<int32_t> tokens;
  std::vector<std::vector<float>> golden;
  std::ifstream in(dir / "golden/logits_pos0-15.jsonl");
  for (std::string line; std::getline(in, line);) {
    const json j = json::parse(line);
    tokens.push_back(j["token"].get<int32_t>());
    golden.push_back(j["logits"].get<std::vector<float>>());
  }
  REQUIRE(tokens.size() == 16);
  Fixture gpu = Make(dir, /*cuda=*/true);
  for (const std::vector<int>& chunks :
       {std::vector<int>{16}, std::vector<int>{5, 3, 1, 7}, std::vector<int>(16, 1)}) {
    const auto logits = ChunkedLogits(*gpu.runner, tokens, chunks);
    float worst = 0;
    for (int p = 0; p < 16; ++p) worst = std::max(worst, MaxAbsDiff(logits[p], golden[p]));
    INFO(chunks.size() << " chunks: max |logit - golden| = " << worst);
    CHECK(worst < 1e-4f);
  }
}

TEST_CASE("CUDA forward: greedy decoding on the device gives the golden tokens", "[cuda][golden]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  std::ifstream in(dir / "golden/greedy.json");
  const json golden = json::parse(in);
  const auto prompt = golden["prompt_ids"].get<std::vector<int32_t>>();
  const auto want = golden["greedy"]["output_ids"].get<std::vector<int32_t>>();
  Fixture gpu = Make(dir, /*cuda=*/true);
  const std::vector<int32_t> blocks = {7, 1, 3, 12, 4};  // 80 positions
  std::vector<int32_t> sequence = prompt, got;
  const std::vector<kernels::SampleRow> greedy = {{.logits_row = 0, .temperature = 0.0f}};
  StepOutput out;
  size_t fed = 0;
  while (got.size() < want.size()) {
    SequenceInput seq{.token_ids = {sequence.data() + fed, sequence.size() - fed},
                      .position = static_cast<int32_t>(fed),
                      .block_table = blocks,
                      .logits = LogitsMode::kLast};
    REQUIRE(gpu->Step({.sequences = {&seq, 1}, .samples = greedy}, &out).ok());
    REQUIRE(out.sampled.size() == 1);
    fed = sequence.size();
    got.push_back(out.sampled[0].token);
    sequence.push_back(out.sampled[0].token);
  }
  CHECK(got == want);
}

// A mixed step (a prefill chunk, decodes, a fresh prompt) with every kind of
// sampling row: the CUDA backend draws what the CPU backend draws, and its
// logits agree with the CPU's. With a BF16 cache a key that differs in the
// last float bit before rounding can land one bf16 step (2^-8) away, which
// moves logits by up to ~1e-3; F32 caches agree to 1e-4.
TEST_CASE("CUDA forward: a mixed batch samples as the CPU backend does", "[cuda]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  for (KvCacheDType kv : {KvCacheDType::kF32, KvCacheDType::kBF16}) {
    INFO("kv cache " << (kv == KvCacheDType::kF32 ? "f32" : "bf16"));
    const float tolerance = kv == KvCacheDType::kF32 ? 1e-4f : 3e-3f;
    Fixture cpu = Make(dir, false, kv), gpu = Make(dir, true, kv);
    const std::vector<int32_t> a = {1, 403, 407, 261, 378, 400, 310, 299, 12, 88, 17, 301,
                                    402, 77, 91, 150, 11, 260, 271};
    const std::vector<int32_t> b = {1, 261}, c = {1, 378, 400};
    const std::vector<int32_t> ba = {0, 1}, bb = {2}, bc = {3};
    // Step 1: prompts of b and c, the first 12 tokens of a.
    const std::vector<SequenceInput> first = {
        {.token_ids = {a.data(), 12}, .position = 0, .block_table = ba, .logits = LogitsMode::kNone},
        {.token_ids = b, .position = 0, .block_table = bb, .logits = LogitsMode::kLast},
        {.token_ids = c, .position = 0, .block_table = bc, .logits = LogitsMode::kLast},
    };
    // Step 2: the rest of a (crossing a block), one decode each for b and c.
    const int32_t next_b = 300, next_c = 301;
    const std::vector<SequenceInput> second = {
        {.token_ids = {a.data() + 12, 7}, .position = 12, .block_table = ba,
         .logits = LogitsMode::kAll},
        {.token_ids = {&next_b, 1}, .position = 2, .block_table = bb, .logits = LogitsMode::kLast},
        {.token_ids = {&next_c, 1}, .position = 3, .block_table = bc, .logits = LogitsMode::kLast},
    };
    std::vector<kernels::SampleRow> rows = {
        {.logits_row = 6, .temperature = 0.0f, .logprobs = true, .num_top_logprobs = 5},
        {.logits_row = 7, .temperature = 0.8f, .top_k = 40, .uniform = 0.37},
        {.logits_row = 8, .temperature = 1.1f, .top_p = 0.9f, .uniform = 0.81,
         .logprobs = true, .num_top_logprobs = 2},
        {.logits_row = 3, .temperature = 0.7f, .min_p = 0.05f, .repetition_penalty = 1.3f,
         .uniform = 0.52, .adjust_begin = 0, .adjust_end = 4},
        {.logits_row = 0, .temperature = 1.0f, .presence_penalty = 0.5f,
         .frequency_penalty = 0.4f, .uniform = 0.05, .adjust_begin = 4, .adjust_end = 7},
    };
    const std::vector<kernels::TokenAdjust> adjust = {
        {.token = 403, .kind = kernels::TokenAdjust::kSeen, .count = 0},
        {.token = 407, .kind = kernels::TokenAdjust::kSeen, .count = 2},
        {.token = 261, .kind = kernels::TokenAdjust::kBan},
        {.token = 12, .kind = kernels::TokenAdjust::kBias, .bias = 3.5f},
        {.token = 378, .kind = kernels::TokenAdjust::kSeen, .count = 1},
        {.token = 400, .kind = kernels::TokenAdjust::kSeen, .count = 3},
        {.token = 5, .kind = kernels::TokenAdjust::kBias, .bias = -2.0f},
    };
    StepOutput cpu_out, gpu_out;
    REQUIRE(cpu->Step({.sequences = first}, &cpu_out).ok());
    REQUIRE(gpu->Step({.sequences = first}, &gpu_out).ok());
    CHECK(MaxAbsDiff(cpu_out.logits, gpu_out.logits) < tolerance);
    const StepInput step{.sequences = second, .samples = rows, .adjust = adjust,
                         .return_logits = true};
    REQUIRE(cpu->Step(step, &cpu_out).ok());
    REQUIRE(gpu->Step(step, &gpu_out).ok());
    CHECK(MaxAbsDiff(cpu_out.logits, gpu_out.logits) < tolerance);
    REQUIRE(gpu_out.sampled.size() == rows.size());
    for (size_t i = 0; i < rows.size(); ++i) {
      INFO("row " << i);
      CHECK(gpu_out.sampled[i].token == cpu_out.sampled[i].token);
      CHECK(gpu_out.sampled[i].logprob == Approx(cpu_out.sampled[i].logprob).margin(tolerance));
      REQUIRE(gpu_out.sampled[i].top_logprobs.size() == cpu_out.sampled[i].top_logprobs.size());
      for (size_t j = 0; j < gpu_out.sampled[i].top_logprobs.size(); ++j) {
        CHECK(gpu_out.sampled[i].top_logprobs[j].token == cpu_out.sampled[i].top_logprobs[j].token);
      }
    }
  }
}

// Speculative decoding as the engine drives the runner (engine/
// worker_executor.cc): each step feeds the tokens not yet in the cache plus
// k draft tokens, asks for the logits of every one of them (kAll), and
// verifies the drafts with one sample row each plus a row after the last;
// the tokens up to the first rejected draft are kept, and the next step
// overwrites the rejected drafts' cache entries. The drafts are the
// reference continuation `oracle` with every third one corrupted, so steps
// both accept and reject. `row` is the template of every sample row; the
// uniforms come from `rng`. Returns the first `count` tokens drawn.
struct SpeculativeRun {
  std::vector<int32_t> tokens;
  int accepted = 0;
  int rejected = 0;
};

SpeculativeRun DecodeSpeculatively(ModelRunner& r, const std::vector<int32_t>& prompt,
                                   const std::vector<int32_t>& oracle, size_t count, int k,
                                   const kernels::SampleRow& row, uint64_t seed) {
  const std::vector<int32_t> blocks = {7, 1, 3, 12, 4, 9};  // 96 positions
  const int32_t vocab = static_cast<int32_t>(r.config().vocab_size);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> unif(0.0, 1.0);
  SpeculativeRun run;
  std::vector<int32_t> sequence = prompt;
  size_t fed = 0;
  int corrupt = 0;
  StepOutput out;
  while (run.tokens.size() < count) {
    std::vector<int32_t> drafts;
    for (int i = 0; i < k && run.tokens.size() + i < oracle.size(); ++i) {
      const int32_t t = oracle[run.tokens.size() + i];
      drafts.push_back(++corrupt % 3 == 0 ? (t + 1) % vocab : t);
    }
    std::vector<int32_t> input(sequence.begin() + static_cast<std::ptrdiff_t>(fed),
                               sequence.end());
    input.insert(input.end(), drafts.begin(), drafts.end());
    const int32_t n = static_cast<int32_t>(input.size());
    const int32_t d = static_cast<int32_t>(drafts.size());
    SequenceInput seq{.token_ids = input, .position = static_cast<int32_t>(fed),
                      .block_table = blocks, .logits = LogitsMode::kAll};
    std::vector<kernels::SampleRow> rows;
    for (int32_t i = 0; i <= d; ++i) {
      kernels::SampleRow s = row;
      s.logits_row = n - 1 - d + i;
      s.draft_token = i < d ? drafts[static_cast<size_t>(i)] : -1;
      s.accept_uniform = i < d ? unif(rng) : 0.0;
      s.uniform = unif(rng);
      rows.push_back(s);
    }
    REQUIRE(r.Step({.sequences = {&seq, 1}, .samples = rows}, &out).ok());
    REQUIRE(out.sampled.size() == rows.size());
    fed = sequence.size();
    for (int32_t i = 0; i <= d; ++i) {
      const int32_t t = out.sampled[static_cast<size_t>(i)].token;
      run.tokens.push_back(t);
      sequence.push_back(t);
      if (i == d) break;
      if (t != drafts[static_cast<size_t>(i)]) {
        ++run.rejected;
        break;
      }
      ++run.accepted;
      ++fed;  // the accepted draft's cache entry stays
    }
  }
  run.tokens.resize(count);
  return run;
}

TEST_CASE("CUDA forward: speculative greedy decoding gives the golden tokens",
          "[cuda][golden][speculative]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  std::ifstream in(dir / "golden/greedy.json");
  const json golden = json::parse(in);
  const auto prompt = golden["prompt_ids"].get<std::vector<int32_t>>();
  const auto want = golden["greedy"]["output_ids"].get<std::vector<int32_t>>();
  Fixture gpu = Make(dir, /*cuda=*/true);
  const kernels::SampleRow greedy = {.temperature = 0.0f};
  for (int k : {1, 4}) {
    INFO(k << " drafts a step");
    const SpeculativeRun run = DecodeSpeculatively(*gpu.runner, prompt, want, want.size(), k,
                                                   greedy, 1);
    CHECK(run.tokens == want);
    CHECK(run.accepted > 0);
    CHECK(run.rejected > 0);
  }
}

// Sampled rows verify drafts on the device token for token as on the CPU
// (the same logits up to rounding, the same uniforms).
TEST_CASE("CUDA forward: speculative sampled decoding draws what the CPU backend draws",
          "[cuda][speculative]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  std::ifstream in(dir / "golden/greedy.json");
  const json golden = json::parse(in);
  const auto prompt = golden["prompt_ids"].get<std::vector<int32_t>>();
  const auto oracle = golden["greedy"]["output_ids"].get<std::vector<int32_t>>();
  Fixture cpu = Make(dir, false), gpu = Make(dir, true);
  const kernels::SampleRow sampled = {.temperature = 0.7f, .top_k = 40, .top_p = 0.95f};
  const SpeculativeRun want = DecodeSpeculatively(*cpu.runner, prompt, oracle, 40, 3, sampled, 7);
  const SpeculativeRun got = DecodeSpeculatively(*gpu.runner, prompt, oracle, 40, 3, sampled, 7);
  CHECK(got.tokens == want.tokens);
  CHECK(got.accepted == want.accepted);
  CHECK(want.accepted > 0);
  CHECK(want.rejected > 0);
}

// A token id the host did not check (it always does) cannot make a kernel
// read outside the embedding table: the kernel skips it and the next
// synchronization reports it, naming the id; the backend then works again.
TEST_CASE("CUDA backend: a bad id in device memory comes back as an error", "[cuda]") {
  auto backend = cuda::CreateCudaBackend({.device = 0});
  REQUIRE(backend.ok());
  kernels::Device& device = (*backend)->device();
  CHECK_FALSE(device.host_memory());
  const std::vector<float> table(4 * 8, 1.0f);
  const std::vector<int32_t> ids = {1, 9999, 2};
  auto d_table = device.Allocate(table.size() * 4, "table");
  auto d_ids = device.Allocate(ids.size() * 4, "ids");
  auto d_out = device.Allocate(3 * 8 * 4, "out");
  REQUIRE((d_table.ok() && d_ids.ok() && d_out.ok()));
  REQUIRE(device.CopyToDevice(d_table->data(), table.data(), table.size() * 4).ok());
  REQUIRE(device.CopyToDevice(d_ids->data(), ids.data(), ids.size() * 4).ok());
  REQUIRE((*backend)->ops().EmbeddingGather(d_table->data(), kernels::DType::kF32, 4, 8,
                                           d_ids->as<int32_t>(), 3, d_out->as<float>(), 8)
              .ok());
  const absl::Status s = device.Synchronize();
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK(s.message() == "cuda:0: token id 9999 at index 1 is outside the vocabulary [0, 4)");
  CHECK(device.Synchronize().ok());  // reported once
  std::vector<float> row(8);
  REQUIRE(device.CopyToHost(row.data(), d_out->as<float>() + 16, 32).ok());
  CHECK(row == std::vector<float>(8, 1.0f));
  auto memory = device.GetMemoryInfo();
  REQUIRE(memory.ok());
  CHECK(memory->free_bytes <= memory->total_bytes);
}

}  // namespace
}  // namespace kestrel::model
