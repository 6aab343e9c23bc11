// Tensor parallelism through the serving engine: TP = 1, 2 and 4 give the
// same tokens (stories260K's golden greedy output, a synthetic Qwen2, a
// seeded sampled request, a mixed batch with preemption and prefix
// caching), and a rank that fails ends the step's requests with INTERNAL,
// leaks no KV block, leaves the executor serving, and every rank thread
// joins. Worker::Options::profile_ops wraps every rank's backend.
#include "engine/worker_executor.h"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <future>

#include <catch2/catch.hpp>

#include "engine/offline.h"
#include "kernels/profiling_backend.h"
#include "model/synthetic.h"
#include "model/weights.h"
#include "nlohmann/json.hpp"
#include "testing/shared_data.h"

namespace kestrel::engine {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::shared_ptr<const model::ModelWeights> Load(const fs::path& dir) {
  auto weights = model::ModelWeights::Load({.dir = dir});
  REQUIRE(weights.ok());
  return std::shared_ptr<const model::ModelWeights>(std::move(*weights));
}

// An offline engine on `tp` ranks of one thread each. `kv_bytes` is the
// budget of all ranks, each holding 1/tp of the KV heads: the block count
// is the same across TP sizes.
std::unique_ptr<OfflineEngine> Make(std::shared_ptr<const model::ModelWeights> weights, int tp,
                                    EngineOptions options = {},
                                    uint64_t kv_bytes = 16ull << 20,
                                    std::function<absl::Status(int, int64_t)> fault = nullptr,
                                    const WorkerExecutor** executor_out = nullptr) {
  WorkerExecutor::Options o;
  o.tensor_parallel_size = tp;
  o.worker.threads = 1;
  o.worker.runner.kv_cache_bytes = kv_bytes;
  o.worker.runner.bf16_dot = false;
  o.fault_injection = std::move(fault);
  for (int64_t id : weights->config().eos_token_ids) {
    options.eos_token_ids.push_back(static_cast<int32_t>(id));
  }
  auto executor = WorkerExecutor::Create(o, weights);
  REQUIRE(executor.ok());
  CHECK((*executor)->tensor_parallel_size() == tp);
  CHECK((*executor)->num_rank_threads() == (tp > 1 || o.fault_injection ? tp : 0));
  if (executor_out != nullptr) *executor_out = executor->get();
  options.request_log = RequestLogFormat::kOff;
  auto engine = OfflineEngine::Create(options, std::move(*executor), nullptr);
  REQUIRE(engine.ok());
  return std::move(*engine);
}

std::vector<std::vector<int32_t>> Tokens(OfflineEngine& e, std::vector<GenerateParams> requests) {
  auto results = e.Generate(std::move(requests));
  REQUIRE(results.ok());
  std::vector<std::vector<int32_t>> out;
  for (const OfflineResult& r : *results) {
    REQUIRE(r.finished);
    REQUIRE(r.samples.at(0).status.ok());
    out.push_back(r.samples.at(0).token_ids);
  }
  return out;
}

GenerateParams Request(std::vector<int32_t> prompt, int max_tokens,
                       model::SamplingParams sampling = {.temperature = 0.0f}) {
  GenerateParams p;
  p.prompt_ids = std::move(prompt);
  p.sampling = sampling;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  return p;
}

TEST_CASE("stories260K: TP = 1, 2, 4 give the golden greedy tokens and the same draws",
          "[tp][golden]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  std::ifstream in(dir / "golden/greedy.json");
  const json g = json::parse(in);
  const auto prompt = g["prompt_ids"].get<std::vector<int32_t>>();
  const auto golden = g["greedy"]["output_ids"].get<std::vector<int32_t>>();
  const int max_tokens = g["greedy"]["max_tokens"].get<int>();
  auto weights = Load(dir);
  const model::SamplingParams seeded = {.temperature = 0.9f, .top_p = 0.95f, .seed = 2024};
  std::vector<std::vector<int32_t>> tp1;
  for (int tp : {1, 2, 4}) {
    INFO("TP = " << tp);
    auto e = Make(weights, tp);
    const auto tokens =
        Tokens(*e, {Request(prompt, max_tokens), Request(prompt, max_tokens, seeded)});
    CHECK(tokens[0] == golden);
    CHECK(tokens[1] != tokens[0]);  // it did sample
    if (tp == 1) {
      tp1 = tokens;
    } else {
      CHECK(tokens == tp1);
    }
  }
}

TEST_CASE("prompt logits at TP = 2 and 4 are TP = 1's", "[tp][golden]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  auto weights = Load(dir);
  GenerateParams p = Request({1, 403, 407, 261, 378, 300, 17}, 2);
  p.return_prompt_logits = true;
  std::vector<float> tp1;
  for (int tp : {1, 2, 4}) {
    auto results = Make(weights, tp)->Generate({p});
    REQUIRE(results.ok());
    const std::vector<float>& logits = (*results)[0].prompt_logits;
    REQUIRE(logits.size() == 7 * 512);
    if (tp == 1) {
      tp1 = logits;
      continue;
    }
    float worst = 0, scale = 0;
    for (size_t i = 0; i < logits.size(); ++i) {
      worst = std::max(worst, std::abs(logits[i] - tp1[i]));
      scale = std::max(scale, std::abs(tp1[i]));
    }
    INFO("TP = " << tp << ": largest |logit| " << scale << ", largest difference " << worst);
    CHECK(worst < 1e-5f * scale);
  }
}

TEST_CASE("synthetic Qwen2 (biases, tied embeddings): TP = 1, 2, 4 give the same tokens",
          "[tp]") {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const fs::path dir = fs::path(tmp != nullptr ? tmp : "/tmp") / "tp_exec_qwen2";
  auto config = model::SyntheticPresetConfig("tiny-qwen2", kernels::DType::kF32);
  REQUIRE(config.ok());
  REQUIRE(model::WriteSyntheticCheckpoint({.dir = dir, .config_json = *config,
                                           .dtype = kernels::DType::kF32, .seed = 3,
                                           .write_tokenizer = false})
              .ok());
  auto weights = Load(dir);
  std::vector<int32_t> prompt;
  for (int i = 0; i < 21; ++i) prompt.push_back((i * 53 + 11) % 320);
  const model::SamplingParams seeded = {.temperature = 1.0f, .top_k = 40, .seed = 9};
  std::vector<std::vector<int32_t>> tp1;
  for (int tp : {1, 2, 4}) {
    INFO("TP = " << tp);
    auto e = Make(weights, tp);
    const auto tokens = Tokens(*e, {Request(prompt, 24), Request(prompt, 24, seeded)});
    if (tp == 1) {
      tp1 = tokens;
    } else {
      CHECK(tokens == tp1);
    }
  }
}

TEST_CASE("a mixed batch with preemption and prefix caching is the same at TP = 1, 2, 4",
          "[tp][golden]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  auto weights = Load(dir);
  // Requests sharing a 40-token prefix (prefix cache hits), greedy and
  // seeded, in a pool too small for all of them (preemption).
  std::vector<int32_t> prefix = {1};
  for (int t = 1; t < 40; ++t) prefix.push_back((t * 37) % 500 + 3);
  std::vector<GenerateParams> requests;
  for (int i = 0; i < 8; ++i) {
    std::vector<int32_t> prompt = prefix;
    for (int t = 0; t < 3 + 5 * i; ++t) prompt.push_back((t * 13 + i * 29) % 500 + 3);
    requests.push_back(Request(prompt, 40 + 12 * i,
                               i % 2 == 0 ? model::SamplingParams{.temperature = 0.0f}
                                          : model::SamplingParams{.temperature = 1.0f,
                                                                  .top_k = 20,
                                                                  .seed = uint64_t(i)}));
  }
  // 20 KB per block at TP = 1 (5 layers, 4 KV heads of 8, 16 tokens, F32):
  // 24 blocks = 384 tokens for about 1,100 wanted.
  const uint64_t kv_bytes = 24 * 20480;
  std::vector<std::vector<int32_t>> tp1;
  for (int tp : {1, 2, 4}) {
    INFO("TP = " << tp);
    const WorkerExecutor* executor = nullptr;
    auto e = Make(weights, tp, {.max_num_batched_tokens = 64, .max_num_seqs = 8}, kv_bytes,
                  nullptr, &executor);
    CHECK(executor->num_kv_blocks() == 24);
    std::vector<size_t> index;
    for (const GenerateParams& r : requests) {
      auto i = e->Add(r);
      REQUIRE(i.ok());
      index.push_back(*i);
    }
    int preemptions = 0;
    while (e->has_work()) preemptions += e->Step().preemptions;
    CHECK(preemptions > 0);
    std::vector<std::vector<int32_t>> tokens;
    for (size_t i : index) {
      REQUIRE(e->result(i).samples.at(0).status.ok());
      tokens.push_back(e->result(i).samples.at(0).token_ids);
    }
    // The shared prefix was served from the cache.
    int cached = 0;
    for (size_t i : index) cached += e->result(i).samples.at(0).usage.cached_prompt_tokens;
    CHECK(cached > 0);
    if (tp == 1) {
      tp1 = tokens;
    } else {
      CHECK(tokens == tp1);
    }
  }
}

TEST_CASE("a failing rank ends the step's requests with INTERNAL and nothing hangs or leaks",
          "[tp][fault]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  auto weights = Load(dir);
  constexpr int64_t kFailAt = 3;
  struct Case {
    int tp;
    int failing_rank;
  };
  for (const Case c : {Case{2, 1}, Case{2, 0}, Case{4, 3}}) {
    INFO("TP = " << c.tp << ", rank " << c.failing_rank << " fails at step " << kFailAt);
    std::atomic<int> faults{0};
    auto fault = [&, c](int rank, int64_t step) {
      if (rank != c.failing_rank || step != kFailAt) return absl::OkStatus();
      ++faults;
      return absl::InternalError("injected fault");
    };
    auto e = Make(weights, c.tp, {}, 16ull << 20, fault);
    const std::vector<int32_t> prompt = {1, 403, 407, 261, 378};
    std::vector<size_t> index;
    for (int i = 0; i < 3; ++i) {
      auto added = e->Add(Request(prompt, 20));
      REQUIRE(added.ok());
      index.push_back(*added);
    }
    int steps = 0;
    while (e->has_work() && steps < 100) {
      e->Step();
      ++steps;
    }
    CHECK(faults == 1);
    // Steps 0..2 drew one token each; step 3 failed and ended them all.
    CHECK(steps == kFailAt + 1);
    for (size_t i : index) {
      const OfflineSample& s = e->result(i).samples.at(0);
      CHECK(s.status.code() == absl::StatusCode::kInternal);
      CHECK(std::string(s.status.message()).find("injected fault") != std::string::npos);
      CHECK(s.token_ids.size() == static_cast<size_t>(kFailAt));
    }
    EngineLoad load = e->core().load();
    CHECK(load.kv_blocks_free == load.kv_blocks_total);
    // The group was rebuilt: the executor still serves, with the golden
    // tokens of an unfaulted run.
    const auto again = Tokens(*e, {Request(prompt, 8)});
    const auto reference = Tokens(*Make(weights, 1), {Request(prompt, 8)});
    CHECK(again == reference);
    load = e->core().load();
    CHECK(load.kv_blocks_free == load.kv_blocks_total);
    // Every rank thread joins, within a deadline.
    auto destroyed = std::async(std::launch::async, [engine = std::move(e)]() mutable {
      engine.reset();
    });
    REQUIRE(destroyed.wait_for(std::chrono::seconds(30)) == std::future_status::ready);
  }
}

TEST_CASE("a step reports each rank's time with tensor parallelism, none without", "[tp]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  auto weights = Load(dir);
  const std::vector<int32_t> tokens = {1, 403, 407, 261, 378};
  const std::vector<int32_t> blocks = {0};
  scheduler::StepOutput step;
  scheduler::ScheduledSequence& seq = step.scheduled.emplace_back();
  seq.token_ids = absl::MakeConstSpan(tokens);
  seq.block_table = absl::MakeConstSpan(blocks);
  seq.is_prefill = true;
  seq.samples = true;
  seq.num_samples = 1;
  const kernels::SampleRow row{.logits_row = 0, .temperature = 0.0f};
  for (int tp : {1, 2}) {
    WorkerExecutor::Options o;
    o.tensor_parallel_size = tp;
    o.worker.threads = 1;
    o.worker.runner.kv_cache_bytes = 1 << 20;
    auto executor = WorkerExecutor::Create(o, weights);
    REQUIRE(executor.ok());
    ExecuteOutput out;
    REQUIRE((*executor)->Execute({.step = &step, .samples = {&row, 1}}, &out).ok());
    REQUIRE(out.sampled.size() == 1);
    CHECK(out.sampled[0].token == 432);  // stories260K's greedy continuation
    CHECK(out.rank_step_times.size() == (tp == 1 ? 0u : 2u));
    for (absl::Duration d : out.rank_step_times) CHECK(d > absl::ZeroDuration());
  }
}

// Worker::Options::profile_ops reaches every rank's backend: the timer is
// off until enabled, then counts each rank's ops, and the tokens do not
// change.
TEST_CASE("op profiling wraps every rank's backend and changes no token", "[tp][profiling]") {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const fs::path dir = fs::path(tmp != nullptr ? tmp : "/tmp") / "tp_exec_profiled";
  auto config = model::SyntheticPresetConfig("tiny-qwen2", kernels::DType::kF32);
  REQUIRE(config.ok());
  REQUIRE(model::WriteSyntheticCheckpoint({.dir = dir, .config_json = *config,
                                           .dtype = kernels::DType::kF32, .seed = 5,
                                           .write_tokenizer = false})
              .ok());
  auto weights = Load(dir);
  std::vector<int32_t> prompt;
  for (int i = 0; i < 9; ++i) prompt.push_back((i * 31 + 7) % 320);
  const int max_tokens = 6;  // one prefill step and 5 decode steps
  const auto plain = Tokens(*Make(weights, 1), {Request(prompt, max_tokens)});

  WorkerExecutor::Options o;
  o.tensor_parallel_size = 2;
  o.worker.threads = 1;
  o.worker.runner.kv_cache_bytes = 16ull << 20;
  o.worker.runner.bf16_dot = false;
  o.worker.profile_ops = true;
  auto executor = WorkerExecutor::Create(o, weights);
  REQUIRE(executor.ok());
  std::vector<kernels::ProfilingBackend*> profilers;
  for (int r = 0; r < 2; ++r) {
    profilers.push_back((*executor)->worker(r).profiler());
    REQUIRE(profilers.back() != nullptr);
    CHECK(&(*executor)->worker(r).backend() == profilers.back());
  }
  auto e = OfflineEngine::Create({.request_log = RequestLogFormat::kOff}, std::move(*executor),
                                 nullptr);
  REQUIRE(e.ok());
  CHECK(Tokens(**e, {Request(prompt, max_tokens)}) == plain);
  for (kernels::ProfilingBackend* p : profilers) CHECK(p->profile().total_calls() == 0);

  for (kernels::ProfilingBackend* p : profilers) p->set_enabled(true);
  CHECK(Tokens(**e, {Request(prompt, max_tokens)}) == plain);
  const int64_t layers = weights->config().num_hidden_layers;
  for (int r = 0; r < 2; ++r) {
    INFO("rank " << r);
    const kernels::OpProfile& p = profilers[r]->profile();
    CHECK(p[kernels::OpKind::kPagedAttention].calls == layers * max_tokens);
    CHECK(p[kernels::OpKind::kWriteKvCache].calls == layers * max_tokens);
    CHECK(p[kernels::OpKind::kGemm].calls >= 4 * layers * max_tokens);  // qkv, o, gate_up, down
    CHECK(p[kernels::OpKind::kGemm].seconds > 0);
    CHECK(p.total_seconds() > p[kernels::OpKind::kGemm].seconds);
  }
}

TEST_CASE("tensor_parallel_size that does not divide the model is refused", "[tp]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  auto weights = Load(dir);
  WorkerExecutor::Options o;
  o.tensor_parallel_size = 3;
  o.worker.threads = 1;
  auto e = WorkerExecutor::Create(o, weights);
  REQUIRE(!e.ok());
  CHECK(std::string(e.status().message()).find("num_attention_heads (8)") != std::string::npos);
  o.tensor_parallel_size = 0;
  CHECK(!WorkerExecutor::Create(o, weights).ok());
  o.tensor_parallel_size = 2;
  o.worker.device = "cuda";
  e = WorkerExecutor::Create(o, weights);
  REQUIRE(!e.ok());
  CHECK(e.status().code() == absl::StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace kestrel::engine
