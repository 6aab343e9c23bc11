// What the engine needs from a model: run the forward pass of one scheduled
// step and hand back logits for the sequences that sample. The real
// implementation wraps model::ModelRunner (engine/runner_executor.h); tests
// use FakeExecutor, which keeps a token-level "KV cache" so block-table
// mistakes change its outputs just as they would a real model's.
#ifndef KESTREL_ENGINE_MODEL_EXECUTOR_H_
#define KESTREL_ENGINE_MODEL_EXECUTOR_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "scheduler/scheduler.h"

namespace kestrel::engine {

// Not thread-safe: only the engine's step loop calls it.
class ModelExecutor {
 public:
  virtual ~ModelExecutor() = default;

  virtual int64_t vocab_size() const = 0;
  // The KV pool the scheduler hands out blocks of.
  virtual int num_kv_blocks() const = 0;
  virtual int block_size() const = 0;
  // Longest prompt plus output the model can take.
  virtual int max_model_len() const = 0;

  // Runs `step`: its block copies first, then every scheduled sequence.
  // Fills `logits` ([num_sampling, vocab_size]) with one row per scheduled
  // sequence whose `samples` is set, in `step.scheduled` order.
  virtual absl::Status Execute(const scheduler::StepOutput& step, std::vector<float>* logits) = 0;
};

}  // namespace kestrel::engine

#endif  // KESTREL_ENGINE_MODEL_EXECUTOR_H_
