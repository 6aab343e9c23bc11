// The engine's core: the scheduler, the model executor and every active
// request, advanced one step at a time by whoever owns it. It has no thread
// and reads no clock of its own: Engine (engine.h) runs it on a loop thread
// for the server; tests and the offline LLM (offline.h) call Step(now)
// directly with a fake or real clock.
#ifndef KESTREL_ENGINE_ENGINE_CORE_H_
#define KESTREL_ENGINE_ENGINE_CORE_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/clock.h"
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

struct EngineOptions {
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
  std::vector<int32_t> eos_token_ids = {};
  // Speculative decoding: the draft tokens a request verifies per decode
  // step when it does not say (GenerateParams::num_speculative_tokens); 0
  // off. Drafts come from prompt lookup with suffixes of ngram.min_n to
  // ngram.max_n tokens (docs/scheduler.md "Speculative decoding").
  int num_speculative_tokens = 0;
  scheduler::NgramOptions ngram = {};
  // Request limits checked by Validate.
  int max_stop_strings = 16;
  int max_stop_string_bytes = 256;
  int max_request_id_bytes = 128;
  // One info-level line per finished request: id, status, finish reason,
  // token counts and timings. Never the prompt or the output text.
  RequestLogFormat request_log = RequestLogFormat::kText;
  // Where time comes from (not owned; null: the real clock). The core reads
  // it only to time steps and tokens; Step's `now` starts each step.
  const Clock* clock = nullptr;
};

// Not thread-safe, except Validate (const, reads only constants). One
// thread owns the core and calls Add, Cancel and Step.
//
// One Step(now):
//   1. Schedule: Scheduler::Step decides the batch; requests past their
//      deadline end with DEADLINE_EXCEEDED.
//   2. Prepare: one sample row per token to draw (each sample's own
//      generator; EOS and stop tokens banned below min_tokens).
//   3. Execute: the forward pass and the draws, on the executor.
//   4. Detokenize: incremental text and stop strings per drawn token.
//   5. Commit: Scheduler::Update appends the tokens and applies stops.
//   6. Stream: TokenEvents, then a FinishEvent for every sample that ended.
// A failed schedule, execute or commit ends exactly the requests of that
// step with INTERNAL (their KV blocks return to the pool) and the core goes
// on serving the others.
class EngineCore {
 public:
  // Told about the request lifecycle, on the core's thread (Engine keeps its
  // thread-safe queue count and id map with it).
  class Listener {
   public:
    virtual ~Listener() = default;
    // The request left the queue: first scheduled, or ended before that.
    // Called once per request.
    virtual void OnDequeued(uint64_t handle) = 0;
    // Every sample of the request has ended: its id is free again. Called
    // before the last FinishEvent reaches the sink, so a client that retries
    // with the same id the moment it hears of the end is never refused.
    virtual void OnReleased(const std::string& request_id) = 0;
  };

  // `tokenizer` (not owned) must outlive the core; null gives token ids
  // without text (stop strings are then refused). `metrics` and `listener`
  // (not owned) may be null.
  static absl::StatusOr<std::unique_ptr<EngineCore>> Create(
      const EngineOptions& options, std::unique_ptr<ModelExecutor> executor,
      const tokenizer::Tokenizer* tokenizer, EngineMetrics* metrics,
      Listener* listener = nullptr);
  ~EngineCore();
  EngineCore(const EngineCore&) = delete;
  EngineCore& operator=(const EngineCore&) = delete;

  // INVALID_ARGUMENT naming the field and value for a request the model
  // cannot take. Thread-safe.
  absl::Status Validate(const GenerateParams& params) const;

  // Starts a validated request; its events go to `sink`. A request the
  // scheduler refuses ends at once with one FinishEvent carrying the error.
  // REQUIRES: `handle` is not active; params.request_id is set.
  void Add(uint64_t handle, GenerateParams params, std::shared_ptr<RequestSink> sink,
           absl::Time arrival);
  // Ends every sample of the request with `status` (reason kAborted); its
  // blocks return to the pool. No-op for a request that has ended.
  void Cancel(uint64_t handle, const absl::Status& status);
  // Cancel for every active request.
  void CancelAll(const absl::Status& status);

  // What one Step did, for offline tools and benchmarks.
  struct StepStats {
    int num_sequences = 0;
    int prefill_tokens = 0;
    int decode_tokens = 0;
    int preemptions = 0;
    // Speculative decoding: draft tokens verified and accepted.
    int draft_tokens = 0;
    int accepted_draft_tokens = 0;
    absl::Duration duration = absl::ZeroDuration();  // by the clock
    bool failed = false;  // the step's requests ended with INTERNAL
  };
  // One engine iteration; see the class comment. A no-op without work.
  StepStats Step(absl::Time now);

  bool has_work() const { return scheduler_->has_work(); }
  int num_active() const { return static_cast<int>(active_.size()); }
  // Load without active_requests (the Engine fills that in).
  EngineLoad load() const;
  const scheduler::Scheduler& scheduler() const { return *scheduler_; }
  int64_t vocab_size() const { return vocab_size_; }
  int max_model_len() const { return max_model_len_; }
  const EngineOptions& options() const { return options_; }

 private:
  struct Active;
  struct Sample;
  // Where each drawn token of a step goes.
  struct Draw {
    uint64_t handle = 0;
    int sample = 0;
    scheduler::SequenceId seq_id = 0;
    // One of a run of rows verifying drafts: the run ends at the first row
    // whose token differs from its draft (or that has none), or that stops.
    bool speculative = false;
    int32_t draft = -1;
  };

  EngineCore(const EngineOptions& options, std::unique_ptr<ModelExecutor> executor,
             std::unique_ptr<scheduler::Scheduler> scheduler, const tokenizer::Tokenizer* tokenizer,
             EngineMetrics* metrics, Listener* listener);

  absl::Time Now() const { return clock_->Now(); }
  // Step phases, in order.
  absl::Status Schedule(absl::Time now);
  void ExpireDeadlines(absl::Time now);
  void NoteFirstScheduled(absl::Time now, int* prefix_queried, int* prefix_hits);
  void PrepareDraws();
  absl::Status Execute();
  void DeliverPromptLogits();
  // Fills the step's spec_* counts in `stats`.
  void Detokenize(absl::Time now, StepStats* stats);
  // Whether `token` ends the sample as plain decoding would (EOS, a stop
  // token, max_tokens); stop strings are the matcher's.
  bool EndsSample(const Active& active, const Sample& sample, int32_t token) const;
  absl::StatusOr<std::vector<scheduler::FinishedSequence>> Commit();
  void Stream(const std::vector<scheduler::FinishedSequence>& finished, absl::Time now);
  // Ends the requests of the current step with INTERNAL and closes the
  // scheduler's step, so the next Step starts clean.
  void FailStep(const absl::Status& status);

  void Retire(uint64_t handle);
  // Writes the request's metrics sample and log line, once.
  void RecordFinished(Active& active);
  void FinishSample(Active& active, int index, FinishReason reason, absl::Status status,
                    absl::Time now);
  void LogRequest(const Active& active, const RequestSample& sample) const;

  // Constant after construction.
  const EngineOptions options_;
  const std::unique_ptr<ModelExecutor> executor_;
  const tokenizer::Tokenizer* const tokenizer_;  // not owned
  EngineMetrics* const metrics_;                // not owned, may be null
  Listener* const listener_;                    // not owned, may be null
  const Clock* const clock_;                    // not owned
  const int64_t vocab_size_;
  const int max_model_len_;

  const std::unique_ptr<scheduler::Scheduler> scheduler_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Active>> active_;

  // The current step, reused across steps.
  scheduler::StepOutput step_;
  std::vector<Draw> draws_;
  std::vector<kernels::SampleRow> rows_;
  std::vector<kernels::TokenAdjust> adjust_;
  std::vector<int32_t> banned_;
  std::vector<int32_t> return_logits_;  // indices in step_.scheduled
  ExecuteOutput output_;
  std::vector<scheduler::SampledToken> sampled_;
  // Tokens each sequence that verified drafts emitted (metrics).
  std::vector<int> spec_tokens_;
};

}  // namespace kestrel::engine

#endif  // KESTREL_ENGINE_ENGINE_CORE_H_
