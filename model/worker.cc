#include "model/worker.h"

#include <memory>
#include <utility>

#include "common/status_macros.h"
#include "kernels/backends.h"

namespace kestrel::model {

Worker::~Worker() = default;

absl::StatusOr<std::unique_ptr<Worker>> Worker::Create(
    const Options& options, std::shared_ptr<const ModelWeights> weights) {
  std::unique_ptr<Worker> w(new Worker());
  w->rank_ = options.runner.communicator != nullptr ? options.runner.communicator->rank()
                                                     : options.rank;
  ASSIGN_OR_RETURN(w->backend_,
                   kernels::CreateBackend({.device = options.device, .threads = options.threads}));
  if (options.profile_ops) {
    auto profiled = std::make_unique<kernels::ProfilingBackend>(std::move(w->backend_));
    w->profiler_ = profiled.get();
    w->backend_ = std::move(profiled);
  }
  ASSIGN_OR_RETURN(w->runner_,
                   ModelRunner::Create(options.runner, std::move(weights), w->backend_.get()));
  return w;
}

}  // namespace kestrel::model
