// The engine: owns the scheduler and the model, runs them in one step-loop
// thread, and streams each request's tokens to its sink. Transport layers
// (gRPC) only validate, Submit, and forward events.
#ifndef KESTREL_ENGINE_ENGINE_H_
#define KESTREL_ENGINE_ENGINE_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "engine/metrics.h"
#include "engine/model_executor.h"
#include "engine/request.h"
#include "model/tokenizer/tokenizer.h"
#include "scheduler/scheduler.h"

namespace kestrel::engine {

// How the engine logs each finished request (one line per request).
enum class RequestLogFormat { kText, kJson, kOff };

// Current load, for GetServerInfo and health decisions.
struct EngineLoad {
  int running_requests = 0;
  int waiting_requests = 0;
  int kv_blocks_total = 0;
  int kv_blocks_free = 0;
  int kv_blocks_cached = 0;
  int kv_block_size = 0;
  // Requests accepted by Submit and not finished yet.
  int active_requests = 0;
};

// Thread-safe: Submit, Cancel, Abort, StopAccepting, CancelAll, WaitUntilIdle
// and load() may be called from any thread. Everything else happens on the
// step-loop thread the engine starts in Create and joins in its destructor.
//
// One iteration of the loop:
//   1. take new requests and cancellations from the intake queue (requests
//      refused by the scheduler get their error as a FinishEvent);
//   2. Scheduler::Step: which sequences run, with which tokens and blocks;
//   3. ModelExecutor::Execute: the forward pass, logits for sampling rows;
//   4. per sampling sequence: mask EOS/stop tokens below min_tokens, sample
//      with the request's own seeded sampler, detokenize incrementally,
//      look for stop strings (holding back partial matches);
//   5. Scheduler::Update with the tokens; stream TokenEvents, then a
//      FinishEvent for every sample that ended.
// A cancel takes effect at the next iteration, so a cancelled sequence is
// gone within one step and its KV blocks are back in the pool.
class Engine {
 public:
  struct Options {
    // Scheduling (see scheduler::Scheduler::Options).
    int max_num_batched_tokens = 2048;
    int max_num_seqs = 256;
    bool enable_prefix_caching = true;
    bool enable_chunked_prefill = true;
    scheduler::SchedulingPolicy policy = scheduler::SchedulingPolicy::kPriority;
    double watermark = 0.01;
    // Requests accepted but not yet started beyond which Submit answers
    // RESOURCE_EXHAUSTED; 0 means unbounded.
    int max_queued_requests = 0;
    // Tokens that end a sample as "eos" unless ignore_eos; the first is the
    // model's primary EOS.
    std::vector<int32_t> eos_token_ids;
    // Request limits checked by Submit.
    int max_stop_strings = 16;
    int max_stop_string_bytes = 256;
    int max_request_id_bytes = 128;
    // One info-level line per finished request: id, status, finish reason,
    // token counts and timings. Never the prompt or the output text.
    RequestLogFormat request_log = RequestLogFormat::kText;
  };

  // `tokenizer` (not owned) must outlive the engine; `metrics` (not owned)
  // may be null.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const Options& options,
                                                        std::unique_ptr<ModelExecutor> executor,
                                                        const tokenizer::Tokenizer* tokenizer,
                                                        EngineMetrics* metrics);
  // Cancels whatever is still running (UNAVAILABLE) and joins the loop.
  ~Engine();
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
  struct Active;
  struct Sample;
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

  Engine(const Options& options, std::unique_ptr<ModelExecutor> executor,
         std::unique_ptr<scheduler::Scheduler> scheduler, const tokenizer::Tokenizer* tokenizer,
         EngineMetrics* metrics);

  absl::Status Validate(const GenerateParams& params) const;
  void Loop();
  // Loop helpers; only the loop thread calls them.
  void Admit(Intake intake);
  void CancelActive(uint64_t handle, const absl::Status& status);
  void RunStep();
  void FailStep(const absl::Status& status);
  // Samples one token for sample `index` of `active` from `logits`.
  absl::Status SampleToken(Active& active, int index, std::span<const float> logits_row,
                           scheduler::SequenceId seq_id, absl::Time now,
                           std::vector<scheduler::SampledToken>* sampled);
  void FinishSample(Active& active, int index, FinishReason reason, absl::Status status,
                    absl::Time now);
  // Removes a request whose samples have all finished (logging it and
  // recording its metrics).
  void Retire(uint64_t handle);
  void LogRequest(const Active& active, const RequestSample& sample) const;
  void PublishLoad();

  // Constant after construction.
  const Options options_;
  const std::unique_ptr<ModelExecutor> executor_;
  const tokenizer::Tokenizer* const tokenizer_;  // not owned
  EngineMetrics* const metrics_;                // not owned, may be null
  const int64_t vocab_size_;
  const int max_model_len_;

  // Loop-thread state.
  const std::unique_ptr<scheduler::Scheduler> scheduler_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Active>> active_;
  scheduler::StepOutput step_;
  std::vector<float> logits_;
  std::vector<scheduler::SampledToken> sampled_;
  std::vector<float> masked_logits_;  // [vocab] scratch for min_tokens masking

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
