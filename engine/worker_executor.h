// The ModelExecutor that runs a real model on its workers (model/worker.h),
// one per tensor-parallel rank: translates the scheduler's step into the
// runner's step input (one SequenceInput per scheduled sequence, logits only
// where a token is sampled or prompt logits are asked for, the
// copy-on-write block copies) and maps the engine's sample rows onto the
// runner's logits rows. This is where tensor parallelism plugs in: a step
// goes to every rank, rank 0's tokens come back.
#ifndef KESTREL_ENGINE_WORKER_EXECUTOR_H_
#define KESTREL_ENGINE_WORKER_EXECUTOR_H_

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model_executor.h"
#include "model/worker.h"

namespace kestrel::engine {

// Not thread-safe (the engine loop is its only caller).
class WorkerExecutor final : public ModelExecutor {
 public:
  // `workers`: one per rank, rank i at index i (exactly one until tensor
  // parallelism lands). `max_model_len` caps prompt plus output; 0 takes the
  // runner's context.
  static absl::StatusOr<std::unique_ptr<WorkerExecutor>> Create(
      std::vector<std::unique_ptr<model::Worker>> workers, int max_model_len);

  int64_t vocab_size() const override { return runner().config().vocab_size; }
  int num_kv_blocks() const override { return static_cast<int>(runner().num_kv_blocks()); }
  int block_size() const override { return static_cast<int>(runner().block_size()); }
  int max_model_len() const override { return max_model_len_; }
  absl::Status Execute(const ExecuteInput& in, ExecuteOutput* out) override;

  const model::ModelRunner& runner() const { return workers_.front()->runner(); }
  const model::Worker& worker(int rank) const { return *workers_[rank]; }
  int num_workers() const { return static_cast<int>(workers_.size()); }

 private:
  WorkerExecutor(std::vector<std::unique_ptr<model::Worker>> workers, int max_model_len)
      : workers_(std::move(workers)), max_model_len_(max_model_len) {}

  const std::vector<std::unique_ptr<model::Worker>> workers_;
  const int max_model_len_;
  // Reused across steps.
  std::vector<model::SequenceInput> batch_;
  std::vector<std::pair<int32_t, int32_t>> copies_;
  std::vector<kernels::SampleRow> samples_;
  std::vector<int32_t> sample_row_of_seq_;  // [num_scheduled]: runner row the seq samples from
  std::vector<uint8_t> all_rows_;           // [num_scheduled]: returns every new token's logits
  model::StepOutput out_;
};

}  // namespace kestrel::engine

#endif  // KESTREL_ENGINE_WORKER_EXECUTOR_H_
