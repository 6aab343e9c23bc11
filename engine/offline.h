// Offline generation on the serving engine, like vLLM's LLM class: requests
// go through the same EngineCore, scheduler, executor and backend sampling
// as the server's, stepped on the caller's thread. kestrel-generate and
// model_bench run on it.
//
//   ASSIGN_OR_RETURN(auto llm, OfflineEngine::Create(options, std::move(executor), tokenizer));
//   ASSIGN_OR_RETURN(std::vector<OfflineResult> results, llm->Generate(requests));
//
// Step by step (benchmarks time each step, or do work between steps):
//   ASSIGN_OR_RETURN(size_t i, llm->Add(params));
//   while (llm->has_work()) EngineCore::StepStats s = llm->Step();
//   const OfflineResult& r = llm->result(i);
#ifndef KESTREL_ENGINE_OFFLINE_H_
#define KESTREL_ENGINE_OFFLINE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/engine_core.h"
#include "engine/model_executor.h"
#include "engine/request.h"
#include "model/sampler.h"
#include "model/tokenizer/tokenizer.h"

namespace kestrel::engine {

// One sample of one request, once it has finished.
struct OfflineSample {
  std::vector<int32_t> token_ids;
  std::string text;  // empty without a tokenizer
  std::vector<model::SampledToken> logprobs;  // when sampling.logprobs
  FinishReason reason = FinishReason::kLength;
  absl::Status status;
  Usage usage;
  Timings timings;
};

struct OfflineResult {
  std::vector<OfflineSample> samples;  // [n]
  // [prompt_len, vocab] with GenerateParams::return_prompt_logits.
  std::vector<float> prompt_logits;
  bool finished = false;
};

// Not thread-safe: one thread calls everything.
class OfflineEngine {
 public:
  // Request logging defaults to off here; `options.clock` defaults to the
  // real clock. `tokenizer` (not owned) may be null (ids only).
  static absl::StatusOr<std::unique_ptr<OfflineEngine>> Create(
      EngineOptions options, std::unique_ptr<ModelExecutor> executor,
      const tokenizer::Tokenizer* tokenizer);
  ~OfflineEngine();

  // Queues a request; returns its index for result(). INVALID_ARGUMENT (as
  // the server's) for a request the model cannot take.
  absl::StatusOr<size_t> Add(GenerateParams params);
  bool has_work() const { return core_->has_work(); }
  EngineCore::StepStats Step();
  const OfflineResult& result(size_t index) const { return *results_[index]; }

  // Adds `requests`, steps until all have finished, and returns their
  // results in order. A request that fails still has a result (its status).
  absl::StatusOr<std::vector<OfflineResult>> Generate(std::vector<GenerateParams> requests);

  const EngineCore& core() const { return *core_; }

 private:
  class Sink;
  OfflineEngine() = default;

  const Clock* clock_ = nullptr;  // not owned
  std::unique_ptr<EngineCore> core_;
  std::vector<std::unique_ptr<OfflineResult>> results_;
  uint64_t next_handle_ = 1;
};

}  // namespace kestrel::engine

#endif  // KESTREL_ENGINE_OFFLINE_H_
