// The ModelExecutor that runs a real model on its workers (model/worker.h),
// one per tensor-parallel rank: translates the scheduler's step into the
// runner's step input (one SequenceInput per scheduled sequence, logits only
// where a token is sampled or prompt logits are asked for, the
// copy-on-write block copies) and maps the engine's sample rows onto the
// runner's logits rows.
//
// Tensor parallelism (docs/parallel.md): with N > 1 ranks every rank's
// worker runs on its own persistent thread with its shard of the model and
// one InProcessCommunicator group. Execute hands the step to every rank
// (they read the one StepInput: the broadcast of an in-process group), waits
// for all of them and returns rank 0's draws. A rank that fails aborts the
// group, so no rank waits in a collective for it; the step then fails with
// INTERNAL naming the rank (EngineCore ends the step's requests and frees
// their blocks), and the executor builds a new group so later steps run.
//
//   ASSIGN_OR_RETURN(auto executor, WorkerExecutor::Create(
//       {.tensor_parallel_size = 2, .worker = {.threads = 1}}, weights));
#ifndef KESTREL_ENGINE_WORKER_EXECUTOR_H_
#define KESTREL_ENGINE_WORKER_EXECUTOR_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "engine/model_executor.h"
#include "model/weights.h"
#include "model/worker.h"
#include "parallel/communicator.h"

namespace kestrel::engine {

// Not thread-safe (the engine loop is its only caller); the rank threads
// are internal.
class WorkerExecutor final : public ModelExecutor {
 public:
  struct Options {
    // Ranks the model is sharded across (>= 1). The model's head, KV head
    // and intermediate counts must divide (model/shard.h).
    int tensor_parallel_size = 1;
    // Every rank's worker: device, threads per rank, runner options. Its
    // rank and runner.communicator are set per rank. With N > 1 ranks:
    // the device must be "cpu" (the NCCL communicator is not wired to the
    // CUDA backend yet); threads = 0 gives each rank 1/N of the CPUs; and
    // runner.kv_cache_bytes is the budget of all ranks together (each gets
    // 1/N; holding 1/N of the KV heads, the block count stays that of one
    // rank, or shrinks when KV heads are replicated).
    model::Worker::Options worker = {};
    // Caps prompt plus output; 0 takes the runner's context.
    int max_model_len = 0;
    // Tests only: called on rank r's thread before it runs the executor's
    // step k (0-based, counting every Execute); a non-OK status fails that
    // rank's step as a kernel error would. Null: no faults.
    std::function<absl::Status(int rank, int64_t step)> fault_injection = nullptr;
  };

  // Builds options.tensor_parallel_size workers sharing `weights` (each
  // holds views of its shard, never a copy of the whole model on host
  // memory) and, for more than one, their communicator group and threads.
  static absl::StatusOr<std::unique_ptr<WorkerExecutor>> Create(
      const Options& options, std::shared_ptr<const model::ModelWeights> weights);
  // One prebuilt worker holding the whole model (no communicator).
  // `max_model_len` caps prompt plus output; 0 takes the runner's context.
  static absl::StatusOr<std::unique_ptr<WorkerExecutor>> Create(
      std::vector<std::unique_ptr<model::Worker>> workers, int max_model_len);
  // Stops and joins the rank threads.
  ~WorkerExecutor() override;

  int64_t vocab_size() const override { return runner().config().vocab_size; }
  // The smallest pool over the ranks: a block id must be valid on every rank.
  int num_kv_blocks() const override { return num_kv_blocks_; }
  int block_size() const override { return static_cast<int>(runner().block_size()); }
  int max_model_len() const override { return max_model_len_; }
  absl::Status Execute(const ExecuteInput& in, ExecuteOutput* out) override;

  // Rank 0's runner.
  const model::ModelRunner& runner() const { return workers_.front()->runner(); }
  const model::Worker& worker(int rank) const { return *workers_[rank]; }
  // REQUIRES: no step is running (its backend is the rank's to use).
  model::Worker& worker(int rank) { return *workers_[rank]; }
  int num_workers() const { return static_cast<int>(workers_.size()); }
  int tensor_parallel_size() const { return num_workers(); }
  // Rank threads running now (0 without tensor parallelism): for tests.
  int num_rank_threads() const { return static_cast<int>(threads_.size()); }

 private:
  WorkerExecutor() = default;
  // Finishes construction: the max_model_len check, the block count, and
  // the rank threads when there is more than one worker.
  absl::Status Init(int max_model_len);
  // Runs `step` on every rank; the first failing rank's error, if any.
  absl::Status RunOnAllRanks(const model::StepInput& step);
  void RankLoop(int rank);
  // A new communicator group for every runner after the old one aborted.
  absl::Status RebuildGroup();

  // Constant after Create.
  std::vector<std::unique_ptr<model::Worker>> workers_;
  std::vector<std::unique_ptr<parallel::Communicator>> comms_;  // [rank]; empty for one rank
  std::function<absl::Status(int, int64_t)> fault_injection_;
  int max_model_len_ = 0;
  int num_kv_blocks_ = 0;
  std::vector<std::thread> threads_;  // [rank] when tensor parallel

  // Handoff between the engine thread and the rank threads.
  std::mutex mu_;
  std::condition_variable start_cv_;  // a step was posted or stop_
  std::condition_variable done_cv_;   // pending_ reached 0
  int64_t generation_ ABSL_GUARDED_BY(mu_) = 0;  // steps posted so far
  int pending_ ABSL_GUARDED_BY(mu_) = 0;         // ranks still running the step
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  const model::StepInput* step_ ABSL_GUARDED_BY(mu_) = nullptr;
  // [rank]: each written by its rank's thread during a step, read by the
  // engine thread once pending_ is 0 (the mutex orders the two).
  std::vector<absl::Status> rank_status_;
  std::vector<model::StepOutput> rank_out_;
  std::vector<absl::Duration> rank_time_;
  int64_t steps_ = 0;  // Execute calls so far (engine thread only)

  // Reused across steps (engine thread only).
  std::vector<model::SequenceInput> batch_;
  std::vector<std::pair<int32_t, int32_t>> copies_;
  std::vector<kernels::SampleRow> samples_;
  std::vector<int32_t> sample_row_of_seq_;  // [num_scheduled]: runner row the seq samples from
  std::vector<int32_t> draft_rows_used_;    // [num_scheduled]: rows given to draft verification
  std::vector<uint8_t> all_rows_;           // [num_scheduled]: returns every new token's logits
};

}  // namespace kestrel::engine

#endif  // KESTREL_ENGINE_WORKER_EXECUTOR_H_
