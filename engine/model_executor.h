// What the engine needs from a model: run one scheduled step (its block
// copies, the forward pass) and draw the tokens the engine asks for. The
// real implementation (engine/worker_executor.h) hands the step to its
// workers, one per tensor-parallel rank, where sampling runs on the backend:
// only token ids and asked-for logprobs come back to the host, full logits
// only when a request asks for prompt logits. Tests use FakeExecutor, which
// keeps a token-level "KV cache" so block-table mistakes change its outputs
// just as they would a real model's.
#ifndef KESTREL_ENGINE_MODEL_EXECUTOR_H_
#define KESTREL_ENGINE_MODEL_EXECUTOR_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "kernels/ops.h"
#include "model/sampler.h"
#include "scheduler/scheduler.h"

namespace kestrel::engine {

struct ExecuteInput {
  // Not owned; must outlive Execute.
  const scheduler::StepOutput* step = nullptr;
  // The tokens to draw. Here a row's logits_row is the index in
  // step->scheduled of a sequence that samples (several rows may share it:
  // the n samples of a forking sequence); the executor maps it to its own
  // logits rows.
  std::span<const kernels::SampleRow> samples = {};
  std::span<const kernels::TokenAdjust> adjust = {};
  // Indices in step->scheduled of sequences whose every new token's logits
  // come back (prompt logits, for offline tools and golden checks).
  std::span<const int32_t> return_logits = {};
};

struct ExecuteOutput {
  // One per ExecuteInput::samples entry, in order.
  std::vector<model::SampledToken> sampled;
  // For each ExecuteInput::return_logits entry, in order: that sequence's
  // new tokens' logits, [n_new, vocab] each, concatenated.
  std::vector<float> logits;
  // [rank] with tensor parallelism: each rank's wall time in the step
  // (compute plus waiting in collectives); empty with one rank.
  std::vector<absl::Duration> rank_step_times;
};

// Not thread-safe: only the engine's step loop calls it.
class ModelExecutor {
 public:
  virtual ~ModelExecutor() = default;

  virtual int64_t vocab_size() const = 0;
  // The KV pool the scheduler hands out blocks of (the smallest over ranks).
  virtual int num_kv_blocks() const = 0;
  virtual int block_size() const = 0;
  // Longest prompt plus output the model can take.
  virtual int max_model_len() const = 0;

  // Runs `in.step`: its block copies first, then every scheduled sequence,
  // then the draws. On error nothing in `out` is meaningful; the KV cache
  // rows of the step's sequences may have been partly written.
  virtual absl::Status Execute(const ExecuteInput& in, ExecuteOutput* out) = 0;
};

}  // namespace kestrel::engine

#endif  // KESTREL_ENGINE_MODEL_EXECUTOR_H_
