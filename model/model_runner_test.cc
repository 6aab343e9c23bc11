#include "model/model_runner.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <numeric>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>

#include "model/safetensors_writer.h"
#include "model/synthetic.h"
#include "model/weights.h"
#include "model/worker.h"
#include "nlohmann/json.hpp"
#include "testing/shared_data.h"

namespace kestrel::model {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct GoldenLogits {
  std::vector<int32_t> tokens;             // token at pos 0..15
  std::vector<std::vector<float>> logits;  // [16][vocab]
};

GoldenLogits ReadGoldenLogits(const fs::path& path) {
  GoldenLogits g;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    const json j = json::parse(line, nullptr, false);
    REQUIRE(j.is_object());
    REQUIRE(j["pos"].get<int>() == static_cast<int>(g.tokens.size()));
    g.tokens.push_back(j["token"].get<int32_t>());
    g.logits.push_back(j["logits"].get<std::vector<float>>());
  }
  REQUIRE(g.tokens.size() == 16);
  return g;
}

struct RunnerOptions {
  SafetensorsCheckpoint::Storage storage = SafetensorsCheckpoint::Storage::kAnonymous;
  uint64_t kv_cache_bytes = 16ull << 20;
  bool bf16_dot = true;
  KvCacheDType kv_cache_dtype = KvCacheDType::kAuto;
};

// A worker (CPU backend, 2 threads) whose runner the tests drive.
struct TestRunner {
  std::unique_ptr<Worker> worker;
  ModelRunner* operator->() { return &worker->runner(); }
  ModelRunner& operator*() { return worker->runner(); }
};

TestRunner Runner(const fs::path& dir, RunnerOptions options = {}) {
  auto weights = ModelWeights::Load({.dir = dir, .storage = options.storage});
  REQUIRE(weights.ok());
  auto w = Worker::Create({.threads = 2,
                           .runner = {.kv_cache_bytes = options.kv_cache_bytes,
                                      .bf16_dot = options.bf16_dot,
                                      .kv_cache_dtype = options.kv_cache_dtype}},
                          std::move(*weights));
  REQUIRE(w.ok());
  return TestRunner{std::move(*w)};
}

float MaxAbsDiff(std::span<const float> a, std::span<const float> b) {
  REQUIRE(a.size() == b.size());
  float m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

// Runs `tokens` through the runner in chunks of the given sizes with kAll
// and returns every position's logits, [tokens.size()][vocab].
std::vector<std::vector<float>> ChunkedLogits(ModelRunner& r, const std::vector<int32_t>& tokens,
                                              const std::vector<int>& chunks,
                                              const std::vector<int32_t>& blocks) {
  std::vector<std::vector<float>> logits;
  int pos = 0;
  StepOutput out;
  for (int n : chunks) {
    SequenceInput in{.token_ids = {tokens.data() + pos, static_cast<size_t>(n)},
                     .position = pos,
                     .block_table = blocks,
                     .logits = LogitsMode::kAll};
    REQUIRE(r.Step({&in, 1}, &out).ok());
    REQUIRE(out.first_row[0] == 0);
    for (int i = 0; i < n; ++i) {
      auto row = out.row(i);
      logits.emplace_back(row.begin(), row.end());
    }
    pos += n;
  }
  REQUIRE(pos == static_cast<int>(tokens.size()));
  return logits;
}

TEST_CASE("stories260K logits at positions 0-15 match the golden file", "[runner][golden]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  const GoldenLogits golden = ReadGoldenLogits(dir / "golden/logits_pos0-15.jsonl");
  auto runner = Runner(dir);
  const std::vector<int32_t> blocks = {3, 7};  // any blocks will do
  // One prefill, and a chunked prefill followed by single-token decodes:
  // both must reproduce the reference.
  for (const std::vector<int>& chunks :
       {std::vector<int>{16}, std::vector<int>{5, 3, 1, 7}, std::vector<int>(16, 1)}) {
    const auto logits = ChunkedLogits(*runner, golden.tokens, chunks, blocks);
    float worst = 0;
    for (int p = 0; p < 16; ++p) worst = std::max(worst, MaxAbsDiff(logits[p], golden.logits[p]));
    INFO("chunks " << chunks.size() << ": max |logit - golden| = " << worst);
    CHECK(worst < 1e-4f);
  }
}

TEST_CASE("file-mmap and anonymous weights give identical logits", "[runner]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  const std::vector<int32_t> tokens = {1, 403, 407, 261, 378};
  const std::vector<int32_t> blocks = {0};
  auto a = Runner(dir, {.storage = SafetensorsCheckpoint::Storage::kAnonymous});
  auto m = Runner(dir, {.storage = SafetensorsCheckpoint::Storage::kFileMmap});
  CHECK(ChunkedLogits(*a, tokens, {5}, blocks) == ChunkedLogits(*m, tokens, {5}, blocks));
}

TEST_CASE("only sequences that sample get logits rows", "[runner]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  auto r = Runner(dir);
  const std::vector<int32_t> a = {1, 403, 407}, b = {1, 261}, c = {1, 378, 400, 401};
  const std::vector<int32_t> ba = {0}, bb = {1}, bc = {2};
  std::vector<SequenceInput> batch = {
      {.token_ids = a, .position = 0, .block_table = ba, .logits = LogitsMode::kNone},
      {.token_ids = b, .position = 0, .block_table = bb, .logits = LogitsMode::kLast},
      {.token_ids = c, .position = 0, .block_table = bc, .logits = LogitsMode::kAll},
  };
  StepOutput out;
  REQUIRE(r->Step(batch, &out).ok());
  CHECK(out.first_row == std::vector<int32_t>{-1, 0, 1});
  CHECK(out.logits.size() == 5 * 512);
}

TEST_CASE("bad step inputs are errors, not crashes", "[runner]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  auto r = Runner(dir, {.kv_cache_bytes = 40 * 5 * 2 * 16 * 32 * 4});  // 40 blocks
  REQUIRE(r->num_kv_blocks() == 40);
  StepOutput out;
  auto error = [&](SequenceInput in) {
    absl::Status s = r->Step({&in, 1}, &out);
    REQUIRE_FALSE(s.ok());
    return std::string(s.message());
  };
  const std::vector<int32_t> ok_ids = {1, 2, 3}, bad_ids = {1, 512, 3};
  const std::vector<int32_t> one_block = {0}, bad_block = {40};
  CHECK(error({.token_ids = bad_ids, .block_table = one_block}) ==
        "step: sequence 0 token_ids[1] = 512 is outside the vocabulary [0, 512)");
  CHECK(error({.token_ids = ok_ids, .position = 15, .block_table = one_block}) ==
        "step: sequence 0 block_table has 1 blocks, positions [0, 18) need 2");
  CHECK(error({.token_ids = ok_ids, .block_table = bad_block}) ==
        "step: sequence 0 block_table[0] = 40 is outside the pool's 40 blocks");
  CHECK(error({.token_ids = ok_ids, .position = 510, .block_table = one_block}) ==
        "step: sequence 0 reaches position 512, beyond the context length 512");
  CHECK(error({.token_ids = {}, .block_table = one_block}) == "step: sequence 0 has no new tokens");
  CHECK(error({.token_ids = ok_ids, .position = -1, .block_table = one_block}) ==
        "step: sequence 0 position must be >= 0, got -1");
  CHECK_FALSE(r->Step(std::span<const SequenceInput>(), &out).ok());
}

TEST_CASE("a step draws on the device and returns only what was asked", "[runner]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  auto r = Runner(dir);
  const std::vector<int32_t> a = {1, 403, 407}, b = {1, 261, 378, 400};
  const std::vector<int32_t> ba = {0}, bb = {1};
  const std::vector<SequenceInput> batch = {
      {.token_ids = a, .position = 0, .block_table = ba, .logits = LogitsMode::kLast},
      {.token_ids = b, .position = 0, .block_table = bb, .logits = LogitsMode::kAll},
  };
  StepOutput logits;
  REQUIRE(r->Step(batch, &logits).ok());  // reference: the logits themselves
  REQUIRE(logits.logits.size() == 5 * 512);
  auto argmax = [&](int row) {
    std::span<const float> l = logits.row(row);
    return static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
  };
  // Greedy on rows 0 and 4 (b's last position), twice on row 0 with a ban on
  // its argmax, and logprobs on row 2.
  std::vector<kernels::SampleRow> rows(4);
  rows[0] = {.logits_row = 0, .temperature = 0.0f};
  rows[1] = {.logits_row = 4, .temperature = 0.0f};
  rows[2] = {.logits_row = 0, .temperature = 0.0f, .adjust_begin = 0, .adjust_end = 1};
  rows[3] = {.logits_row = 2, .temperature = 0.0f, .logprobs = true, .num_top_logprobs = 3};
  const std::vector<kernels::TokenAdjust> adjust = {
      {.token = argmax(0), .kind = kernels::TokenAdjust::kBan}};
  StepOutput out;
  REQUIRE(r->Step({.sequences = batch, .samples = rows, .adjust = adjust}, &out).ok());
  CHECK(out.logits.empty());  // not asked for
  CHECK(out.first_row == std::vector<int32_t>{0, 1});
  REQUIRE(out.sampled.size() == 4);
  CHECK(out.sampled[0].token == argmax(0));
  CHECK(out.sampled[1].token == argmax(4));
  CHECK(out.sampled[2].token != argmax(0));
  CHECK(out.sampled[3].token == argmax(2));
  REQUIRE(out.sampled[3].top_logprobs.size() == 3);
  CHECK(out.sampled[3].top_logprobs[0].token == argmax(2));
  CHECK(out.sampled[3].logprob == Approx(out.sampled[3].top_logprobs[0].logprob));
  CHECK(out.sampled[0].top_logprobs.empty());
  // A row naming a logits row the step does not have is an error.
  const std::vector<kernels::SampleRow> bad = {{.logits_row = 5}};
  absl::Status s = r->Step({.sequences = batch, .samples = bad}, &out);
  CHECK(s.message() == "step: sample 0 logits_row 5 is outside the step's 5 logits rows");
  // So is a draft token outside the vocabulary (-1 is no draft).
  const int64_t vocab = r->config().vocab_size;
  const std::vector<kernels::SampleRow> bad_draft = {
      {.logits_row = 0}, {.logits_row = 1, .draft_token = static_cast<int32_t>(vocab)}};
  s = r->Step({.sequences = batch, .samples = bad_draft}, &out);
  const std::string v = std::to_string(vocab);
  CHECK(s.message() == "step: sample 1 draft_token " + v + " is outside [-1, " + v + ")");
}

TEST_CASE("block copies in a step copy K and V of every layer", "[runner]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  auto r = Runner(dir);
  // Prefill 20 tokens into blocks {3, 4}, copy block 4 (positions 16-19)
  // to block 7, then decode position 20 from a table that uses 7 instead.
  std::vector<int32_t> tokens(21);
  for (int i = 0; i < 21; ++i) tokens[i] = (i * 37 + 1) % 512;
  const std::vector<int32_t> original = {3, 4}, copied = {3, 7};
  StepOutput out;
  SequenceInput prefill{.token_ids = {tokens.data(), 20}, .position = 0,
                        .block_table = original, .logits = LogitsMode::kNone};
  REQUIRE(r->Step({&prefill, 1}, &out).ok());
  const std::vector<std::pair<int32_t, int32_t>> copies = {{4, 7}};
  SequenceInput decode{.token_ids = {tokens.data() + 20, 1}, .position = 20,
                       .block_table = copied, .logits = LogitsMode::kLast};
  REQUIRE(r->Step({.sequences = {&decode, 1}, .block_copies = copies, .return_logits = true}, &out)
              .ok());
  const std::vector<float> via_copy(out.logits.begin(), out.logits.end());
  decode.block_table = original;
  REQUIRE(r->Step({&decode, 1}, &out).ok());
  CHECK(via_copy == out.logits);
  // Without the copy, block 7 holds nothing of this sequence: different logits.
  const std::vector<int32_t> fresh = {3, 9};
  decode.block_table = fresh;
  REQUIRE(r->Step({&decode, 1}, &out).ok());
  CHECK(via_copy != out.logits);
  const std::vector<std::pair<int32_t, int32_t>> bad = {{4, 99999}};
  CHECK(r->Step({.sequences = {&decode, 1}, .block_copies = bad}, &out).message() ==
        "step: block copy 4 -> 99999 is outside the pool of " +
            std::to_string(r->num_kv_blocks()) + " blocks");
}

TEST_CASE("a weight slice is a view with the parent's row stride", "[runner]") {
  // [4, 6] F32 matrix; slices keep the parent's leading dimension.
  std::vector<float> w(24);
  for (int i = 0; i < 24; ++i) w[i] = static_cast<float>(i);
  const Matrix m{w.data(), kernels::DType::kF32, 4, 6, 6, nullptr};
  const Matrix rows = m.RowSlice(1, 3), cols = m.ColSlice(2, 5);
  CHECK(rows.rows == 2);
  CHECK(rows.ld == 6);
  CHECK(static_cast<const float*>(rows.data)[0] == 6.0f);
  CHECK(cols.cols == 3);
  CHECK(cols.ld == 6);
  CHECK(static_cast<const float*>(cols.data)[0] == 2.0f);
  CHECK(static_cast<const float*>(cols.data)[cols.ld] == 8.0f);  // row 1, column 2
  CHECK(cols.bytes() == 4 * 3 * 4);
}

TEST_CASE("kv_cache_dtype names", "[runner]") {
  CHECK(*ParseKvCacheDType("auto") == KvCacheDType::kAuto);
  CHECK(*ParseKvCacheDType("F32") == KvCacheDType::kF32);
  CHECK(*ParseKvCacheDType("bf16") == KvCacheDType::kBF16);
  CHECK(*ParseKvCacheDType("bfloat16") == KvCacheDType::kBF16);
  CHECK(ParseKvCacheDType("fp8").status().message() ==
        "kv_cache_dtype must be auto, f32 or bf16, got \"fp8\"");
}

// --gpu-memory-utilization: the KV cache gets the rest of that share of the
// device's memory; a share the weights already use up is an error that says
// so (checked on the CPU backend, whose device memory is the host's).
TEST_CASE("a KV budget from a memory share", "[runner]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  auto weights = ModelWeights::Load({.dir = dir});
  REQUIRE(weights.ok());
  std::shared_ptr<const ModelWeights> shared = std::move(*weights);
  auto tiny = Worker::Create({.threads = 1, .runner = {.memory_utilization = 1e-9}}, shared);
  REQUIRE_FALSE(tiny.ok());
  CHECK(tiny.status().code() == absl::StatusCode::kResourceExhausted);
  CHECK(tiny.status().message().find("leaves no room for the KV cache") != std::string::npos);
  auto bad = Worker::Create({.threads = 1, .runner = {.memory_utilization = 1.5}}, shared);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message() == "gpu_memory_utilization must be in (0, 1], got 1.5");
}

// Synthetic architectures: a whole-prompt prefill and token-by-token decoding
// must agree (positions, RoPE scaling, q/k norm, biases, KV cache reads).
// With exact GEMMs they agree to float rounding. With bf16 dot products (the
// default for BF16 weights) each GEMM rounds its input to bf16, so the
// last-bit differences between the prefill and decode attention paths can
// flip an activation by one bf16 step (2^-8 relative) and move logits by a
// few 1e-3; a plumbing bug moves them by the logits' own size.
TEST_CASE("qwen2/qwen3/llama-shaped synthetic models: prefill == decode", "[runner]") {
  const char* tmp = std::getenv("TEST_TMPDIR");
  struct Mode {
    kernels::DType dtype;
    bool bf16_dot;
    float tolerance;  // relative to the largest |logit|
    KvCacheDType kv = KvCacheDType::kAuto;
  };
  for (const char* preset : {"tiny", "tiny-qwen2", "tiny-qwen3"}) {
    // A BF16 cache holds the same rounded K/V for both (the projections are
    // batch invariant), so it keeps the exact path's agreement.
    for (const Mode mode : {Mode{kernels::DType::kF32, false, 1e-5f}, Mode{kernels::DType::kBF16, false, 1e-5f},
                            Mode{kernels::DType::kBF16, true, 1e-2f},
                            Mode{kernels::DType::kF32, false, 1e-5f, KvCacheDType::kBF16}}) {
      const kernels::DType dtype = mode.dtype;
      INFO(preset << " " << kernels::DTypeName(dtype) << (mode.bf16_dot ? " bf16_dot" : " exact")
                  << (mode.kv == KvCacheDType::kBF16 ? " bf16 kv" : ""));
      const fs::path dir = fs::path(tmp != nullptr ? tmp : "/tmp") /
                           (std::string("runner_") + preset + kernels::DTypeName(dtype));
      auto config = SyntheticPresetConfig(preset, dtype);
      REQUIRE(config.ok());
      REQUIRE(WriteSyntheticCheckpoint({.dir = dir, .config_json = *config, .dtype = dtype,
                                        .seed = 42, .write_tokenizer = false})
                  .ok());
      auto r = Runner(dir, {.bf16_dot = mode.bf16_dot, .kv_cache_dtype = mode.kv});
      std::vector<int32_t> tokens(37);
      for (int i = 0; i < 37; ++i) tokens[i] = (i * 97 + 5) % 320;
      const std::vector<int32_t> blocks = {9, 2, 5};
      const auto whole = ChunkedLogits(*r, tokens, {37}, blocks);
      const auto steps = ChunkedLogits(*r, tokens, std::vector<int>(37, 1), blocks);
      float worst = 0, scale = 0;
      for (int p = 0; p < 37; ++p) {
        for (float v : whole[p]) {
          REQUIRE(std::isfinite(v));
          scale = std::max(scale, std::fabs(v));
        }
        worst = std::max(worst, MaxAbsDiff(whole[p], steps[p]));
      }
      INFO("largest |logit| " << scale << ", largest difference " << worst);
      CHECK(scale > 0.1f);
      CHECK(worst < mode.tolerance * scale);
    }
  }
}

}  // namespace
}  // namespace kestrel::model
