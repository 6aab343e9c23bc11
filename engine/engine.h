// The engine: runs the engine core (scheduler, model executor, active
// requests) on one step-loop thread and streams each request's tokens to its
// sink. Transport layers (gRPC) only validate, Submit, and forward events.
#ifndef KESTREL_ENGINE_ENGINE_H_
#define KESTREL_ENGINE_ENGINE_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "engine/clock.h"
#include "engine/engine_core.h"
#include "engine/metrics.h"
#include "engine/model_executor.h"
#include "engine/request.h"
#include "model/tokenizer/tokenizer.h"

namespace kestrel::engine {

// Thread-safe: Submit, Cancel, Abort, StopAccepting, CancelAll, WaitUntilIdle
// and load() may be called from any thread. The EngineCore (engine_core.h)
// runs on the step-loop thread the engine starts in Create and joins in its
// destructor; every other thread only queues work for it.
//
// One iteration of the loop:
//   1. take new requests and cancellations from the intake queue and hand
//      them to the core (requests it refuses get their error as a
//      FinishEvent);
//   2. EngineCore::Step(clock now): schedule, execute, draw, detokenize,
//      commit, stream (see EngineCore);
//   3. publish the load for GetServerInfo and the metrics.
// A cancel takes effect at the next iteration, so a cancelled sequence is
// gone within one step and its KV blocks are back in the pool.
class Engine final : private EngineCore::Listener {
 public:
  using Options = EngineOptions;

  // `tokenizer` (not owned) must outlive the engine; `metrics` (not owned)
  // may be null.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const Options& options,
                                                        std::unique_ptr<ModelExecutor> executor,
                                                        const tokenizer::Tokenizer* tokenizer,
                                                        EngineMetrics* metrics);
  // Cancels whatever is still running (UNAVAILABLE) and joins the loop.
  ~Engine() override;
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Validates and queues a request; its events go to `sink`. Returns a
  // handle for Cancel. Errors (nothing is queued): INVALID_ARGUMENT naming
  // the field and value; ALREADY_EXISTS for an active request_id;
  // RESOURCE_EXHAUSTED when max_queued_requests wait; UNAVAILABLE after
  // StopAccepting.
  absl::StatusOr<uint64_t> Submit(GenerateParams params, std::shared_ptr<RequestSink> sink);

  // Ends the request with CANCELLED (its client went away). No-op when it
  // has already finished.
  void Cancel(uint64_t handle);
  // Cancel by client-visible request id; false when no active request has it.
  bool Abort(const std::string& request_id);

  // Drain: refuse new requests (UNAVAILABLE) from now on.
  void StopAccepting();
  // Blocks until no request is active or `timeout` passes; true when idle.
  bool WaitUntilIdle(absl::Duration timeout);
  // Ends every active request with `status` (e.g. UNAVAILABLE at the end of
  // a drain).
  void CancelAll(const absl::Status& status);

  EngineLoad load() const;
  int64_t vocab_size() const { return vocab_size_; }
  int max_model_len() const { return max_model_len_; }

 private:
  struct Intake {
    uint64_t handle = 0;
    GenerateParams params;
    std::shared_ptr<RequestSink> sink;
    absl::Time arrival;
  };
  struct CancelOrder {
    uint64_t handle = 0;
    absl::Status status;
  };

  Engine(const Options& options, EngineMetrics* metrics);

  void Loop();
  void PublishLoad();
  // EngineCore::Listener, on the loop thread.
  void OnDequeued(uint64_t handle) override;
  void OnReleased(const std::string& request_id) override;

  // Constant after Create.
  const Options options_;
  const Clock* const clock_;        // not owned
  EngineMetrics* const metrics_;    // not owned, may be null
  std::unique_ptr<EngineCore> core_;  // used by the loop thread only
  int64_t vocab_size_ = 0;
  int max_model_len_ = 0;

  // std::mutex rather than absl::Mutex: Debian's Abseil is not built for
  // ThreadSanitizer, which then cannot see absl::Mutex's synchronization.
  mutable std::mutex mu_;
  // Signalled when the loop has new work: intake, cancels, stop.
  std::condition_variable work_cv_;
  // Signalled when a request leaves ids_.
  std::condition_variable idle_cv_;
  std::deque<Intake> intake_ ABSL_GUARDED_BY(mu_);
  std::deque<CancelOrder> cancels_ ABSL_GUARDED_BY(mu_);
  // Client id -> handle of every request from Submit until it finishes.
  absl::flat_hash_map<std::string, uint64_t> ids_ ABSL_GUARDED_BY(mu_);
  // Accepted and not yet scheduled for the first time.
  int queued_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_handle_ ABSL_GUARDED_BY(mu_) = 1;
  bool accepting_ ABSL_GUARDED_BY(mu_) = true;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  EngineLoad load_ ABSL_GUARDED_BY(mu_);

  std::thread loop_;
};

}  // namespace kestrel::engine

#endif  // KESTREL_ENGINE_ENGINE_H_
