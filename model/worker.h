// A worker is one rank of the model: the backend it computes on (a CPU
// thread pool or a GPU) and the model runner over that backend.
// The engine's executor owns the workers and hands each step to all of
// them. With tensor parallelism (options.runner.communicator) each rank's
// worker computes its shard of the model (zero-copy row/column views of the
// shared weights, model/shard.h) and combines it with the other ranks'.
//
//   ASSIGN_OR_RETURN(auto weights, ModelWeights::Load({.dir = dir}));
//   ASSIGN_OR_RETURN(auto worker, Worker::Create({.threads = 2}, std::move(weights)));
//   RETURN_IF_ERROR(worker->Execute(step, &out));
#ifndef KESTREL_MODEL_WORKER_H_
#define KESTREL_MODEL_WORKER_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/profiling_backend.h"
#include "model/model_runner.h"
#include "model/weights.h"

namespace kestrel::model {

// Not thread-safe: one thread drives a worker.
class Worker {
 public:
  struct Options {
    // This worker's tensor-parallel rank: runner.communicator->rank(), or 0
    // without one.
    int rank = 0;
    // The backend (kernels/backends.h): "cpu", "cuda" or "cuda:N".
    std::string device = "cpu";
    // CPU backend: threads running the kernels, including the caller; 0 =
    // one per CPU.
    int threads = 0;
    ModelRunner::Options runner = {};
    // Wraps the backend in kernels::ProfilingBackend, so profiler() can time
    // every op (disabled until the caller enables it; then, on an
    // asynchronous device, each op synchronizes: a benchmark mode, never
    // for serving). model_bench's "where the time goes" uses it.
    bool profile_ops = false;
  };

  static absl::StatusOr<std::unique_ptr<Worker>> Create(
      const Options& options, std::shared_ptr<const ModelWeights> weights);
  ~Worker();

  // Runs one step on this rank (see ModelRunner::Step).
  absl::Status Execute(const StepInput& in, StepOutput* out) { return runner_->Step(in, out); }

  int rank() const { return rank_; }
  ModelRunner& runner() { return *runner_; }
  const ModelRunner& runner() const { return *runner_; }
  kernels::Backend& backend() { return *backend_; }
  // "cpu (avx512, 2 threads)".
  std::string Describe() const { return backend_->Describe(); }
  // The backend's op timer with options.profile_ops, else null. Enable,
  // read and reset it only between steps.
  kernels::ProfilingBackend* profiler() { return profiler_; }

 private:
  Worker() = default;

  int rank_ = 0;
  std::unique_ptr<kernels::Backend> backend_;
  kernels::ProfilingBackend* profiler_ = nullptr;  // not owned: backend_ when profiling
  std::unique_ptr<ModelRunner> runner_;  // uses backend_; destroyed first
};

}  // namespace kestrel::model

#endif  // KESTREL_MODEL_WORKER_H_
