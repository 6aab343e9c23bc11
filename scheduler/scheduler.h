// The continuous-batching scheduler: decides, one step at a time, which
// sequences run, how many tokens each computes and where their KV lives.
// Policy, block layout and an example timeline: docs/scheduler.md.
#ifndef KESTREL_SCHEDULER_SCHEDULER_H_
#define KESTREL_SCHEDULER_SCHEDULER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "scheduler/block_manager.h"
#include "scheduler/ngram_proposer.h"
#include "scheduler/request.h"

namespace kestrel::scheduler {

enum class SchedulingPolicy {
  kFcfs,      // arrival order; Request::priority is ignored
  kPriority,  // higher Request::priority first, arrival order within one
};

// One sequence's work in a step. The spans point into scheduler state and are
// valid until the next call to Update, Abort or AddRequest.
struct ScheduledSequence {
  SequenceId seq_id = 0;
  RequestId request_id = 0;
  // Which of the request's n samples this is (0 before the fork).
  int sample_index = 0;
  // Tokens whose KV this step computes; positions position_offset, +1, ...
  absl::Span<const TokenId> token_ids;
  int position_offset = 0;
  // Logical-to-physical block map covering every position up to the last
  // new token.
  absl::Span<const BlockId> block_table;
  // The step computes KV of tokens known when the sequence was (re)admitted:
  // its prompt, or prompt plus generated tokens after a preemption.
  bool is_prefill = false;
  // The last new token is the sequence's last token, so the runner computes
  // logits there and the caller reports `num_samples` sampled tokens.
  bool samples = false;
  // Tokens to report: n at the first sample of an n > 1 request (the sequence
  // forks into n), 1 otherwise, 0 when !samples.
  int num_samples = 0;
  // Speculative decoding: token_ids is the sequence's last token followed
  // by this many draft tokens (positions position_offset + 1, ...). The
  // caller needs logits for every new token, verifies draft i with the
  // logits of token i, and reports between 1 and 1 + num_draft_tokens
  // tokens for the sequence, in order: the accepted drafts, then the token
  // drawn after the last accepted one (docs/scheduler.md). 0: a plain step.
  int num_draft_tokens = 0;
};

// What the runner executes for one step, and what changed in the scheduler.
struct StepOutput {
  // Decodes first, then prefill chunks, each group in policy order.
  std::vector<ScheduledSequence> scheduled;
  // Copy-on-write copies to do before running the step.
  std::vector<BlockCopy> block_copies;
  // Sequences that lost their blocks this step and went back to waiting; they
  // recompute their prompt and generated tokens when readmitted.
  std::vector<SequenceId> preempted;
  // Sequences the scheduler itself ended in this step (deadlines). Stop
  // conditions are reported by Update; aborts by their caller.
  std::vector<FinishedSequence> finished;
  int num_batched_tokens = 0;
  int num_prefill_tokens = 0;
  int num_decode_tokens = 0;
  // Prompt tokens admitted this step whose KV came from the prefix cache.
  int num_prefix_cached_tokens = 0;
  // Draft tokens in this step's decodes (included in num_decode_tokens).
  int num_draft_tokens = 0;

  void Clear();
};

// A read-only view of one live sequence, for tests and debugging.
struct SequenceSnapshot {
  SequenceId seq_id = 0;
  RequestId request_id = 0;
  bool running = false;
  int num_tokens = 0;
  int num_computed_tokens = 0;
  int num_output_tokens = 0;
};

// Continuous batching over a paged KV pool.
//
// The caller (the engine's step loop) alternates Step and Update:
//
//   AddRequest(r) ...                 // any time except between Step/Update
//   Step(now, &out)                   // decide the batch, allocate blocks
//   runner executes out               // copies, forward pass, sampling
//   Update(sampled tokens)            // commit KV, append tokens, stop checks
//   Abort(id) ...                     // any time
//
// Each step builds a batch under max_num_batched_tokens and max_num_seqs:
//   1. requests past their deadline end (StepOutput::finished);
//   2. every running sequence with one uncomputed token decodes, in policy
//      order. If its block is full and the pool is empty, the lowest-priority,
//      latest-arrived running sequence is preempted (possibly itself): its
//      blocks are freed and it returns to the front of its priority class in
//      the waiting queue, to be recomputed;
//   3. running sequences mid-prompt get the next chunk of the remaining
//      budget (chunked prefill), so a long prompt never delays decodes;
//      A sequence of a speculative request also verifies draft tokens
//      (prompt lookup) when the budget and the free pool allow, never
//      preempting for them; Update commits only the accepted ones;
//   4. if nothing was preempted, waiting sequences are admitted in policy
//      order (head-of-line: a request that does not fit blocks those behind
//      it), reusing cached prefix blocks, while the budget lasts and the free
//      pool stays above the watermark.
//
// Example, budget 32, sequences A B C decoding and a 100-token prompt D:
//   step 1: A B C decode (3 tokens), D prefills [0, 29)
//   step 2: A B C decode, D prefills [29, 58)
//   step 3: A B C decode, D prefills [58, 87)
//   step 4: A B C decode, D prefills [87, 100) and samples
//   step 5: A B C D decode
//
// Cost: Step is O(running + admitted) with no sorting; the running list stays
// ordered by insertion, and the waiting queue is a deque per priority.
//
// Not thread-safe: one thread (the engine loop) owns it.
class Scheduler {
 public:
  struct Options {
    // KV pool geometry; see BlockManager::Options. num_kv_blocks must be > 0.
    int num_kv_blocks = 0;
    int block_size = 16;
    bool enable_prefix_caching = true;
    // Token budget per step (decodes + prefill chunks); >= max_num_seqs so
    // every running sequence can always decode.
    int max_num_batched_tokens = 2048;
    // Cap on running sequences, hence on sequences per step; > 0.
    int max_num_seqs = 256;
    // Cap on prompt + max_tokens per request; 0 means only the pool limits it.
    int max_model_len = 0;
    SchedulingPolicy policy = SchedulingPolicy::kFcfs;
    // Fraction of the pool that admission leaves free so already-running
    // sequences can grow without immediate preemption; in [0, 1).
    double watermark = 0.01;
    // Split prompts across steps. Off: a prompt is admitted only when its
    // whole (re)computation fits in one step's budget.
    bool enable_chunked_prefill = true;
    // Admission control: AddRequest fails with RESOURCE_EXHAUSTED while this
    // many sequences wait. 0: unbounded.
    int max_waiting_sequences = 0;
    // Speculative decoding's prompt lookup (requests opt in with
    // Request::num_speculative_tokens): suffix lengths tried.
    NgramOptions ngram = {};
  };

  // Monotonic counters since Create.
  struct Stats {
    int64_t steps = 0;
    int64_t preemptions = 0;
    int64_t prefill_tokens = 0;  // computed, including recomputation
    int64_t decode_tokens = 0;  // including draft tokens
    int64_t draft_tokens = 0;   // proposed and verified
    int64_t prefix_cached_tokens = 0;  // admitted tokens served by the cache
    int64_t requests_added = 0;
    int64_t requests_rejected = 0;
  };

  static absl::StatusOr<std::unique_ptr<Scheduler>> Create(const Options& options);
  ~Scheduler();

  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a request. Errors: INVALID_ARGUMENT for a malformed request or one
  // that can never fit (prompt + max_tokens beyond the pool or
  // max_model_len, n beyond max_num_seqs), naming the field and value;
  // ALREADY_EXISTS for a live id; RESOURCE_EXHAUSTED when the waiting queue
  // is at max_waiting_sequences. Allowed at any time.
  absl::Status AddRequest(Request request);

  // Ends every sequence of `id` in whatever state, returning its blocks.
  // Allowed between Step and Update: the runner's samples for it are then
  // ignored. NOT_FOUND if `id` is not live.
  absl::Status Abort(RequestId id);

  // Plans the next step into `out` (cleared first; reuse it across steps to
  // keep allocations out of the loop). `now` is only compared to deadlines.
  // REQUIRES: the previous Step's Update has been called
  // (else FAILED_PRECONDITION).
  absl::Status Step(absl::Time now, StepOutput* out);

  // Reports the tokens sampled for the last Step: exactly num_samples entries
  // per scheduled sequence that samples, in any order (for a forking sequence
  // the i-th entry becomes sample i). Commits the step's KV (so its full
  // blocks enter the prefix cache), appends tokens and applies stop
  // conditions. Returns the sequences that finished. On error nothing changes.
  absl::StatusOr<std::vector<FinishedSequence>> Update(
      absl::Span<const SampledToken> sampled);

  int num_running() const { return static_cast<int>(running_.size()); }
  int num_waiting() const { return num_waiting_; }
  int num_requests() const { return static_cast<int>(requests_.size()); }
  bool has_work() const { return !running_.empty() || num_waiting_ > 0; }
  const Stats& stats() const { return stats_; }
  const BlockManager& block_manager() const { return *blocks_; }
  const Options& options() const { return options_; }

  // Live sequences, running ones first. O(sequences); for tests and debugging.
  std::vector<SequenceSnapshot> Snapshot() const;
  // O(sequences + blocks) consistency check for tests: queue membership,
  // ordering, caps, table coverage, and the block manager's invariants.
  absl::Status CheckInvariants() const;

 private:
  struct RequestState;
  struct Sequence;

  explicit Scheduler(const Options& options, std::unique_ptr<BlockManager> blocks);

  // Sort key of the running list and of the waiting queue within a priority.
  static bool RunsBefore(const Sequence* a, const Sequence* b);
  int EffectivePriority(const Request& r) const;

  void InsertRunning(Sequence* seq);
  void RemoveRunning(Sequence* seq);
  void PushWaiting(Sequence* seq, bool front);
  void RemoveWaiting(Sequence* seq);
  // Frees `seq`'s blocks and requeues it for recomputation.
  void Preempt(Sequence* seq, StepOutput* out);
  // Drops a sequence (any state) and, with its last sequence, its request.
  void Destroy(Sequence* seq);
  // Adds `seq`'s next `num_new_tokens` to the batch; `table` is its block
  // table after allocation.
  // With drafts (seq->draft non-empty) the new tokens are the last token
  // and the drafts.
  void Emit(Sequence* seq, int num_new_tokens, absl::Span<const BlockId> table,
            StepOutput* out);
  // Proposes seq->draft for a decode, within the request's
  // num_speculative_tokens, its max_tokens and the step's token budget less
  // `reserve` tokens kept for the decodes still to schedule.
  void ProposeDraft(Sequence* seq, int reserve);
  void ExpireDeadlines(absl::Time now, StepOutput* out);
  absl::Status ScheduleDecodes(StepOutput* out);
  absl::Status ScheduleRunningPrefills(StepOutput* out);
  absl::Status AdmitWaiting(StepOutput* out);
  // Extends `seq`'s block hashes over its current tokens.
  void UpdateHashes(Sequence* seq);
  // Returns the reason `seq` must stop after appending its newest token.
  std::optional<FinishReason> StopReason(const Sequence& seq,
                                         bool stop_string_matched) const;
  Sequence* CreateSequence(RequestState* request, int sample_index);
  // Running slots an unforked n > 1 sequence holds for its future samples.
  static int ReservedSlots(const Sequence& seq);
  // Forks every in-flight sequence that sampled its first of n > 1 tokens.
  absl::Status ForkSampledSequences();

  // Constant after construction.
  const Options options_;
  const int watermark_blocks_;

  std::unique_ptr<BlockManager> blocks_;
  absl::flat_hash_map<RequestId, std::unique_ptr<RequestState>> requests_;
  absl::flat_hash_map<SequenceId, std::unique_ptr<Sequence>> sequences_;
  // Running sequences sorted by RunsBefore: priority desc, then arrival.
  std::vector<Sequence*> running_;
  // Waiting sequences per priority class, highest class first; within a class
  // preempted sequences come first, then arrival order.
  std::map<int, std::deque<Sequence*>, std::greater<int>> waiting_;
  int num_waiting_ = 0;
  // (deadline, request) min-heap; stale entries are skipped when popped.
  using DeadlineEntry = std::pair<absl::Time, RequestId>;
  std::priority_queue<DeadlineEntry, std::vector<DeadlineEntry>,
                      std::greater<DeadlineEntry>>
      deadlines_;

  // The step between Step and Update.
  bool step_in_flight_ = false;
  // Scheduled sequences of that step; an entry is nulled when its sequence is
  // destroyed (abort) before Update, so Update never touches freed memory.
  std::vector<Sequence*> in_flight_;
  // Update scratch: the sequence each sampled entry resolves to.
  std::vector<Sequence*> resolved_;
  // Sequences aborted while in flight, whose samples Update ignores.
  absl::flat_hash_set<SequenceId> aborted_in_flight_;
  // Scratch for ScheduleDecodes -> ScheduleRunningPrefills; kept to reuse its
  // capacity.
  std::vector<Sequence*> prefill_scratch_;
  bool preempted_this_step_ = false;
  int budget_left_ = 0;
  // Sum of ReservedSlots over running_, so forks never exceed max_num_seqs.
  int reserved_slots_ = 0;

  uint64_t next_arrival_ = 0;
  SequenceId next_seq_id_ = 1;
  int64_t step_index_ = 0;
  Stats stats_;
};

}  // namespace kestrel::scheduler

#endif  // KESTREL_SCHEDULER_SCHEDULER_H_
