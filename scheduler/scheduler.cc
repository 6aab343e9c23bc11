// Continuous-batching scheduler: queues, the per-step batch decision,
// preemption by recompute, and the commit of sampled tokens.
#include "scheduler/scheduler.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace kestrel::scheduler {

struct Scheduler::RequestState {
  Request request;
  BlockHash root_hash = 0;
  // Position in arrival order; the tie-breaker of every queue.
  uint64_t arrival = 0;
  // Request::priority under kPriority, 0 under kFcfs.
  int priority = 0;
  // The n > 1 fork has happened (sample_index 0 sampled its first token).
  bool forked = false;
  std::vector<Sequence*> sequences;  // live ones; not owned
};

struct Scheduler::Sequence {
  SequenceId id = 0;
  RequestState* request = nullptr;  // not owned
  int sample_index = 0;
  // Prompt followed by generated tokens.
  std::vector<TokenId> tokens;
  int num_prompt_tokens = 0;
  // Tokens whose KV is in this sequence's blocks (committed by Update).
  int num_computed = 0;
  // Tokens known at the last admission; computing below this is prefill.
  int prefill_end = 0;
  // Chained hashes of the full blocks of `tokens`, extended lazily.
  std::vector<BlockHash> block_hashes;
  bool running = false;
  // Waiting after a preemption: goes ahead of its class's new arrivals.
  bool requeued = false;
  // The in-flight step's share: tokens computed and samples expected.
  int64_t last_scheduled_step = -1;
  int in_flight_index = -1;  // into in_flight_ while the step is in flight
  int scheduled_tokens = 0;
  int pending_samples = 0;
  // Scratch for Update: samples seen so far, children made by the fork.
  int received = 0;
  std::vector<Sequence*> fork_children;
  // Speculative decoding: the drafts this step verifies, and the step's new
  // tokens (the last token, then the drafts) that ScheduledSequence points at.
  std::vector<TokenId> draft;
  std::vector<TokenId> step_tokens;
  // Update: tokens reported for this sequence (the KV it commits when it
  // verified drafts), and whether an earlier one ended it.
  int step_received = 0;
  bool stopped = false;

  int num_output_tokens() const {
    return static_cast<int>(tokens.size()) - num_prompt_tokens;
  }
};

void StepOutput::Clear() {
  scheduled.clear();
  block_copies.clear();
  preempted.clear();
  finished.clear();
  num_batched_tokens = 0;
  num_prefill_tokens = 0;
  num_decode_tokens = 0;
  num_prefix_cached_tokens = 0;
  num_draft_tokens = 0;
}

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(
    const Options& options) {
  if (options.max_num_seqs <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Scheduler::Options.max_num_seqs must be > 0, got ", options.max_num_seqs));
  }
  if (options.max_num_batched_tokens < options.max_num_seqs) {
    // Otherwise a full running set could not all decode in one step, and
    // decodes would be skipped.
    return absl::InvalidArgumentError(absl::StrCat(
        "Scheduler::Options.max_num_batched_tokens must be >= max_num_seqs (",
        options.max_num_seqs, "), got ", options.max_num_batched_tokens));
  }
  if (options.watermark < 0 || options.watermark >= 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Scheduler::Options.watermark must be in [0, 1), got ", options.watermark));
  }
  if (options.max_model_len < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Scheduler::Options.max_model_len must be >= 0, got ", options.max_model_len));
  }
  if (options.ngram.min_n < 1 || options.ngram.max_n < options.ngram.min_n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Scheduler::Options.ngram needs 1 <= min_n <= max_n, got min_n ", options.ngram.min_n,
        ", max_n ", options.ngram.max_n));
  }
  if (options.max_waiting_sequences < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("Scheduler::Options.max_waiting_sequences must be >= 0, got ",
                     options.max_waiting_sequences));
  }
  BlockManager::Options bm;
  bm.num_blocks = options.num_kv_blocks;
  bm.block_size = options.block_size;
  bm.enable_prefix_caching = options.enable_prefix_caching;
  ASSIGN_OR_RETURN(std::unique_ptr<BlockManager> blocks, BlockManager::Create(bm));
  return std::unique_ptr<Scheduler>(new Scheduler(options, std::move(blocks)));
}

Scheduler::Scheduler(const Options& options, std::unique_ptr<BlockManager> blocks)
    : options_(options),
      watermark_blocks_(static_cast<int>(options.watermark * options.num_kv_blocks)),
      blocks_(std::move(blocks)) {}

Scheduler::~Scheduler() = default;

bool Scheduler::RunsBefore(const Sequence* a, const Sequence* b) {
  if (a->request->priority != b->request->priority) {
    return a->request->priority > b->request->priority;
  }
  if (a->request->arrival != b->request->arrival) {
    return a->request->arrival < b->request->arrival;
  }
  return a->id < b->id;
}

int Scheduler::EffectivePriority(const Request& r) const {
  return options_.policy == SchedulingPolicy::kPriority ? r.priority : 0;
}

int Scheduler::ReservedSlots(const Sequence& seq) {
  const RequestState& r = *seq.request;
  return (r.request.n > 1 && !r.forked) ? r.request.n - 1 : 0;
}

void Scheduler::InsertRunning(Sequence* seq) {
  // New admissions are usually the latest arrivals, so this is an append in
  // the common case; otherwise one memmove, never a re-sort.
  auto pos = std::upper_bound(running_.begin(), running_.end(), seq, RunsBefore);
  running_.insert(pos, seq);
  seq->running = true;
  reserved_slots_ += ReservedSlots(*seq);
}

void Scheduler::RemoveRunning(Sequence* seq) {
  auto pos = std::lower_bound(running_.begin(), running_.end(), seq, RunsBefore);
  if (pos != running_.end() && *pos == seq) running_.erase(pos);
  seq->running = false;
  reserved_slots_ -= ReservedSlots(*seq);
}

void Scheduler::PushWaiting(Sequence* seq, bool front) {
  std::deque<Sequence*>& q = waiting_[seq->request->priority];
  if (front) {
    // Ahead of the class's new arrivals, in order among other requeued ones.
    auto pos = q.begin();
    while (pos != q.end() && (*pos)->requeued && RunsBefore(*pos, seq)) ++pos;
    q.insert(pos, seq);
    seq->requeued = true;
  } else {
    q.push_back(seq);
  }
  ++num_waiting_;
}

void Scheduler::RemoveWaiting(Sequence* seq) {
  auto cls = waiting_.find(seq->request->priority);
  if (cls == waiting_.end()) return;
  std::deque<Sequence*>& q = cls->second;
  auto pos = std::find(q.begin(), q.end(), seq);
  if (pos == q.end()) return;
  q.erase(pos);
  --num_waiting_;
  if (q.empty()) waiting_.erase(cls);
}

Scheduler::Sequence* Scheduler::CreateSequence(RequestState* request,
                                               int sample_index) {
  auto seq = std::make_unique<Sequence>();
  seq->id = next_seq_id_++;
  seq->request = request;
  seq->sample_index = sample_index;
  Sequence* raw = seq.get();
  sequences_.emplace(raw->id, std::move(seq));
  request->sequences.push_back(raw);
  return raw;
}

absl::Status Scheduler::AddRequest(Request request) {
  absl::Status status = [&]() -> absl::Status {
    RETURN_IF_ERROR(ValidateRequest(request));
    if (requests_.contains(request.id)) {
      return absl::AlreadyExistsError(
          absl::StrCat("request.id ", request.id, " is already live"));
    }
    if (request.n > options_.max_num_seqs) {
      return absl::InvalidArgumentError(
          absl::StrCat("request.n must be <= max_num_seqs (", options_.max_num_seqs,
                       "), got ", request.n, " (request ", request.id, ")"));
    }
    const int64_t prompt = static_cast<int64_t>(request.prompt_token_ids.size());
    const int64_t total = prompt + request.max_tokens;
    if (options_.max_model_len > 0 && total > options_.max_model_len) {
      return absl::InvalidArgumentError(absl::StrCat(
          "request.max_tokens: prompt length ", prompt, " + max_tokens ",
          request.max_tokens, " = ", total, " exceeds max_model_len ",
          options_.max_model_len, " (request ", request.id, ")"));
    }
    // The last sampled token never has its KV computed, so a sequence holds
    // at most total - 1 tokens of KV. Preemption guarantees progress only if
    // one sequence fits the whole pool on its own.
    const int64_t kv_tokens = total - 1;
    const int64_t blocks_needed =
        (kv_tokens + options_.block_size - 1) / options_.block_size;
    if (blocks_needed > options_.num_kv_blocks) {
      return absl::InvalidArgumentError(absl::StrCat(
          "request.max_tokens: prompt length ", prompt, " + max_tokens ",
          request.max_tokens, " needs ", blocks_needed, " KV blocks of ",
          options_.block_size, " tokens, but the pool has only ",
          options_.num_kv_blocks, " (request ", request.id, ")"));
    }
    if (!options_.enable_chunked_prefill &&
        kv_tokens > options_.max_num_batched_tokens) {
      return absl::InvalidArgumentError(absl::StrCat(
          "request.max_tokens: prompt length ", prompt, " + max_tokens ",
          request.max_tokens, " could need a ", kv_tokens,
          "-token recompute, beyond max_num_batched_tokens ",
          options_.max_num_batched_tokens,
          " with chunked prefill off (request ", request.id, ")"));
    }
    if (options_.max_waiting_sequences > 0 &&
        num_waiting_ >= options_.max_waiting_sequences) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "waiting queue is full (", num_waiting_, " sequences, max_waiting_sequences ",
          options_.max_waiting_sequences, "); request ", request.id, " rejected"));
    }
    return absl::OkStatus();
  }();
  if (!status.ok()) {
    ++stats_.requests_rejected;
    return status;
  }

  auto state = std::make_unique<RequestState>();
  state->root_hash = BlockManager::RootHash(request.cache_salt);
  state->arrival = next_arrival_++;
  state->priority = EffectivePriority(request);
  state->request = std::move(request);
  RequestState* r = state.get();
  requests_.emplace(r->request.id, std::move(state));

  Sequence* seq = CreateSequence(r, 0);
  seq->tokens = r->request.prompt_token_ids;
  seq->num_prompt_tokens = static_cast<int>(seq->tokens.size());
  PushWaiting(seq, /*front=*/false);
  if (r->request.deadline != absl::InfiniteFuture()) {
    deadlines_.emplace(r->request.deadline, r->request.id);
  }
  ++stats_.requests_added;
  return absl::OkStatus();
}

void Scheduler::Destroy(Sequence* seq) {
  if (seq->running) {
    RemoveRunning(seq);
  } else {
    RemoveWaiting(seq);
  }
  blocks_->Free(seq->id);
  if (step_in_flight_ && seq->last_scheduled_step == step_index_ &&
      seq->in_flight_index >= 0) {
    in_flight_[seq->in_flight_index] = nullptr;
    aborted_in_flight_.insert(seq->id);
  }
  RequestState* r = seq->request;
  auto& seqs = r->sequences;
  seqs.erase(std::find(seqs.begin(), seqs.end(), seq));
  sequences_.erase(seq->id);  // deletes seq
  if (seqs.empty()) requests_.erase(r->request.id);  // deletes r
}

absl::Status Scheduler::Abort(RequestId id) {
  auto it = requests_.find(id);
  if (it == requests_.end()) {
    return absl::NotFoundError(absl::StrCat("request ", id, " is not live"));
  }
  // Copy: Destroy edits the list and frees the request with its last sequence.
  const std::vector<Sequence*> seqs = it->second->sequences;
  for (Sequence* seq : seqs) Destroy(seq);
  return absl::OkStatus();
}

void Scheduler::UpdateHashes(Sequence* seq) {
  if (!blocks_->prefix_caching_enabled()) return;
  blocks_->ExtendBlockHashes(seq->tokens, seq->request->root_hash,
                             &seq->block_hashes);
}

void Scheduler::Preempt(Sequence* seq, StepOutput* out) {
  RemoveRunning(seq);
  blocks_->Free(seq->id);
  // Recompute from scratch; the prefix cache usually returns the full blocks
  // just freed, so the recompute is often cheap.
  seq->num_computed = 0;
  PushWaiting(seq, /*front=*/true);
  out->preempted.push_back(seq->id);
  ++stats_.preemptions;
  preempted_this_step_ = true;
}

void Scheduler::Emit(Sequence* seq, int num_new_tokens,
                     absl::Span<const BlockId> table, StepOutput* out) {
  const RequestState& r = *seq->request;
  ScheduledSequence s;
  s.seq_id = seq->id;
  s.request_id = r.request.id;
  s.sample_index = seq->sample_index;
  const int num_drafts = static_cast<int>(seq->draft.size());
  if (num_drafts == 0) {
    s.token_ids = absl::MakeConstSpan(seq->tokens).subspan(seq->num_computed,
                                                           num_new_tokens);
  } else {
    seq->step_tokens.assign(1, seq->tokens.back());
    seq->step_tokens.insert(seq->step_tokens.end(), seq->draft.begin(), seq->draft.end());
    s.token_ids = seq->step_tokens;
  }
  s.position_offset = seq->num_computed;
  s.block_table = table;
  s.is_prefill = seq->num_computed < seq->prefill_end;
  s.samples = seq->num_computed + num_new_tokens - num_drafts ==
              static_cast<int>(seq->tokens.size());
  s.num_samples = !s.samples ? 0 : (r.request.n > 1 && !r.forked) ? r.request.n : 1;
  s.num_draft_tokens = num_drafts;
  out->scheduled.push_back(s);
  out->num_draft_tokens += num_drafts;
  stats_.draft_tokens += num_drafts;

  seq->last_scheduled_step = step_index_;
  seq->scheduled_tokens = num_new_tokens;
  // With drafts, an upper bound: 1 to 1 + num_drafts tokens come back.
  seq->pending_samples = s.num_samples + num_drafts;
  seq->in_flight_index = static_cast<int>(in_flight_.size());
  in_flight_.push_back(seq);
  budget_left_ -= num_new_tokens;
  out->num_batched_tokens += num_new_tokens;
  if (s.is_prefill) {
    out->num_prefill_tokens += num_new_tokens;
    stats_.prefill_tokens += num_new_tokens;
  } else {
    out->num_decode_tokens += num_new_tokens;
    stats_.decode_tokens += num_new_tokens;
  }
}

void Scheduler::ExpireDeadlines(absl::Time now, StepOutput* out) {
  while (!deadlines_.empty() && deadlines_.top().first <= now) {
    const auto [deadline, id] = deadlines_.top();
    deadlines_.pop();
    auto it = requests_.find(id);
    // Stale entry: the request ended, or the id was reused with a new deadline.
    if (it == requests_.end() || it->second->request.deadline != deadline) continue;
    const std::vector<Sequence*> seqs = it->second->sequences;
    for (Sequence* seq : seqs) {
      out->finished.push_back({id, seq->id, seq->sample_index,
                               FinishReason::kDeadline, seq->num_output_tokens()});
      Destroy(seq);
    }
  }
}

absl::Status Scheduler::Step(absl::Time now, StepOutput* out) {
  if (step_in_flight_) {
    return absl::FailedPreconditionError(
        "Scheduler::Step called before Update for the previous step");
  }
  out->Clear();
  ++step_index_;
  ++stats_.steps;
  budget_left_ = options_.max_num_batched_tokens;
  preempted_this_step_ = false;
  ExpireDeadlines(now, out);
  // The step is in flight as soon as anything is scheduled, so Update can
  // commit whatever was emitted even if a later phase reports an error.
  step_in_flight_ = true;
  // Errors below are internal: the checks before each allocation make them
  // unreachable unless the accounting is broken.
  RETURN_IF_ERROR(ScheduleDecodes(out));
  RETURN_IF_ERROR(ScheduleRunningPrefills(out));
  RETURN_IF_ERROR(AdmitWaiting(out));
  stats_.prefix_cached_tokens += out->num_prefix_cached_tokens;
  return absl::OkStatus();
}

absl::Status Scheduler::ScheduleDecodes(StepOutput* out) {
  prefill_scratch_.clear();
  for (size_t i = 0; i < running_.size(); ++i) {
    Sequence* seq = running_[i];
    const int uncomputed = static_cast<int>(seq->tokens.size()) - seq->num_computed;
    if (uncomputed != 1) {
      prefill_scratch_.push_back(seq);
      continue;
    }
    if (budget_left_ == 0) continue;  // unreachable: max_num_seqs <= budget
    const int end = seq->num_computed + 1;
    seq->draft.clear();
    if (seq->request->request.num_speculative_tokens > 0) {
      // Every later running sequence may still need one token of budget
      // and one fresh block.
      const int reserve = static_cast<int>(running_.size() - i - 1);
      ProposeDraft(seq, reserve);
      const int num_drafts = static_cast<int>(seq->draft.size());
      // Drafts only take blocks nobody else in this step may need, so they
      // never cause a preemption (nor eat into the admission watermark).
      if (num_drafts > 0 &&
          blocks_->num_free_blocks() -
                  blocks_->BlocksNeededToAppend(seq->id, seq->num_computed, end + num_drafts) <
              reserve + watermark_blocks_) {
        seq->draft.clear();
      }
      if (!seq->draft.empty()) {
        auto table = blocks_->AppendSlots(seq->id, seq->num_computed, end + num_drafts,
                                          &out->block_copies);
        if (table.ok()) {
          Emit(seq, 1 + num_drafts, *table, out);
          continue;
        }
        if (table.status().code() != absl::StatusCode::kResourceExhausted) {
          return table.status();
        }
        seq->draft.clear();
      }
    }
    // Fast path first: one table lookup when the pool has room.
    auto table = blocks_->AppendSlots(seq->id, seq->num_computed, end,
                                      &out->block_copies);
    if (table.ok()) {
      Emit(seq, 1, *table, out);
      continue;
    }
    if (table.status().code() != absl::StatusCode::kResourceExhausted) {
      return table.status();
    }
    bool self_preempted = false;
    while (blocks_->BlocksNeededToAppend(seq->id, seq->num_computed, end) >
           blocks_->num_free_blocks()) {
      // Sequences behind index i have not been scheduled yet, and the victim
      // (the back of the list) is one of them or seq itself.
      Sequence* victim = running_.back();
      Preempt(victim, out);
      if (victim == seq) {
        self_preempted = true;
        break;
      }
    }
    if (self_preempted) break;  // seq was the last running sequence
    ASSIGN_OR_RETURN(table, blocks_->AppendSlots(seq->id, seq->num_computed, end,
                                                 &out->block_copies));
    Emit(seq, 1, *table, out);
  }
  return absl::OkStatus();
}

void Scheduler::ProposeDraft(Sequence* seq, int reserve) {
  const RequestState& r = *seq->request;
  // Only a plain decode of one sample verifies drafts: not a prefill's last
  // token, not a sequence about to fork.
  if (seq->num_computed < seq->prefill_end || ReservedSlots(*seq) > 0) return;
  // The step emits at most 1 + k tokens: stay within max_tokens (hence
  // within max_model_len, checked at AddRequest) and the token budget.
  const int k = std::min({r.request.num_speculative_tokens,
                          r.request.max_tokens - seq->num_output_tokens() - 1,
                          budget_left_ - 1 - reserve});
  if (k <= 0) return;
  ProposeNgramDraft(seq->tokens, options_.ngram, k, &seq->draft);
}

absl::Status Scheduler::ScheduleRunningPrefills(StepOutput* out) {
  for (Sequence* seq : prefill_scratch_) {
    if (!seq->running) continue;  // preempted earlier in this loop
    if (budget_left_ == 0) break;
    const int uncomputed = static_cast<int>(seq->tokens.size()) - seq->num_computed;
    int chunk = std::min(uncomputed, budget_left_);
    if (!options_.enable_chunked_prefill && chunk < uncomputed) continue;
    bool self_preempted = false;
    for (;;) {
      const int room = blocks_->MaxCoverableTokens(seq->id, seq->num_computed) -
                       seq->num_computed;
      if (room >= chunk) break;
      if (room > 0 && options_.enable_chunked_prefill) {
        chunk = room;
        break;
      }
      // Victim: the lowest-priority, latest-arrived sequence not already
      // scheduled this step (seq itself qualifies, so one exists).
      Sequence* victim = nullptr;
      for (auto it = running_.rbegin(); it != running_.rend(); ++it) {
        if ((*it)->last_scheduled_step != step_index_) {
          victim = *it;
          break;
        }
      }
      Preempt(victim, out);
      if (victim == seq) {
        self_preempted = true;
        break;
      }
    }
    if (self_preempted) continue;
    ASSIGN_OR_RETURN(absl::Span<const BlockId> table,
                     blocks_->AppendSlots(seq->id, seq->num_computed,
                                          seq->num_computed + chunk,
                                          &out->block_copies));
    Emit(seq, chunk, table, out);
  }
  return absl::OkStatus();
}

absl::Status Scheduler::AdmitWaiting(StepOutput* out) {
  // Admitting right after a preemption would hand the freed blocks to new
  // work and preempt again next step (thrashing).
  if (preempted_this_step_) return absl::OkStatus();
  const int bs = options_.block_size;
  for (auto cls = waiting_.begin(); cls != waiting_.end();) {
    std::deque<Sequence*>& q = cls->second;
    while (!q.empty()) {
      if (budget_left_ == 0) return absl::OkStatus();
      Sequence* seq = q.front();
      if (static_cast<int>(running_.size()) + reserved_slots_ + 1 +
              ReservedSlots(*seq) >
          options_.max_num_seqs) {
        return absl::OkStatus();
      }
      UpdateHashes(seq);
      const int total = static_cast<int>(seq->tokens.size());
      // At least the last token is computed so the step can sample.
      const int max_hit_blocks = std::min<int>((total - 1) / bs, seq->block_hashes.size());
      const auto query = absl::MakeConstSpan(seq->block_hashes).first(max_hit_blocks);
      const int hits = blocks_->FindCachedPrefix(query);
      const int cached = hits * bs;
      const int uncomputed = total - cached;
      const int chunk = std::min(uncomputed, budget_left_);
      if (!options_.enable_chunked_prefill && chunk < uncomputed) {
        return absl::OkStatus();
      }
      const int needed =
          blocks_->BlocksNeededForNewSequence(query.first(hits), cached + chunk);
      const int free = blocks_->num_free_blocks();
      if (needed > free) return absl::OkStatus();
      // An empty running set admits regardless of the watermark: the request
      // fits the pool alone (checked at AddRequest), so it can always finish.
      if (!running_.empty() && free - needed < watermark_blocks_) {
        return absl::OkStatus();
      }
      ASSIGN_OR_RETURN(absl::Span<const BlockId> table,
                       blocks_->AllocateSequence(seq->id, query.first(hits),
                                                 max_hit_blocks, cached + chunk));
      q.pop_front();
      --num_waiting_;
      seq->requeued = false;
      seq->num_computed = cached;
      seq->prefill_end = total;
      InsertRunning(seq);
      out->num_prefix_cached_tokens += cached;
      Emit(seq, chunk, table, out);
    }
    cls = waiting_.erase(cls);
  }
  return absl::OkStatus();
}

std::optional<FinishReason> Scheduler::StopReason(const Sequence& seq,
                                                  bool stop_string_matched) const {
  const Request& r = seq.request->request;
  const TokenId token = seq.tokens.back();
  if (stop_string_matched) return FinishReason::kStopString;
  if (!r.ignore_eos && r.eos_token_id >= 0 && token == r.eos_token_id) {
    return FinishReason::kEos;
  }
  if (std::find(r.stop_token_ids.begin(), r.stop_token_ids.end(), token) !=
      r.stop_token_ids.end()) {
    return FinishReason::kStopToken;
  }
  if (seq.num_output_tokens() >= r.max_tokens) return FinishReason::kLength;
  return std::nullopt;
}

absl::Status Scheduler::ForkSampledSequences() {
  for (Sequence* parent : in_flight_) {
    // A sequence that verified drafts reports a run, not n samples.
    if (parent == nullptr || parent->pending_samples <= 1 || !parent->draft.empty()) continue;
    RequestState* r = parent->request;
    // The parent's reserved slots become the children.
    reserved_slots_ -= ReservedSlots(*parent);
    r->forked = true;
    for (int j = 1; j < parent->pending_samples; ++j) {
      Sequence* child = CreateSequence(r, j);
      child->tokens = parent->tokens;
      child->num_prompt_tokens = parent->num_prompt_tokens;
      child->num_computed = parent->num_computed;
      child->prefill_end = parent->prefill_end;
      child->block_hashes = parent->block_hashes;
      RETURN_IF_ERROR(blocks_->Fork(parent->id, child->id));
      InsertRunning(child);
      parent->fork_children.push_back(child);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<FinishedSequence>> Scheduler::Update(
    absl::Span<const SampledToken> sampled) {
  if (!step_in_flight_) {
    return absl::FailedPreconditionError(
        "Scheduler::Update called without a Step in flight");
  }
  // Validate everything before changing anything.
  resolved_.assign(sampled.size(), nullptr);
  absl::Status invalid;
  for (size_t i = 0; i < sampled.size(); ++i) {
    const SampledToken& s = sampled[i];
    auto it = sequences_.find(s.seq_id);
    if (it == sequences_.end() && aborted_in_flight_.contains(s.seq_id)) continue;
    Sequence* seq = it == sequences_.end() ? nullptr : it->second.get();
    if (seq == nullptr || seq->last_scheduled_step != step_index_ ||
        seq->received >= seq->pending_samples) {
      invalid = absl::InvalidArgumentError(absl::StrCat(
          "sampled.seq_id ", s.seq_id,
          ": not scheduled to sample that many tokens in the last step"));
      break;
    }
    if (s.token_id < 0) {
      invalid = absl::InvalidArgumentError(absl::StrCat(
          "sampled.token_id must be >= 0, got ", s.token_id, " (sequence ",
          s.seq_id, ")"));
      break;
    }
    ++seq->received;
    resolved_[i] = seq;
  }
  if (invalid.ok()) {
    for (Sequence* seq : in_flight_) {
      if (seq == nullptr) continue;
      // A sequence that verified drafts reports 1 to pending_samples tokens.
      const bool ok = seq->draft.empty() ? seq->received == seq->pending_samples
                                         : seq->received >= 1 || seq->pending_samples == 0;
      if (!ok) {
        invalid = absl::InvalidArgumentError(absl::StrCat(
            "sequence ", seq->id, " expected ",
            seq->draft.empty() ? "" : "1 to ", seq->pending_samples,
            " sampled tokens, got ", seq->received));
        break;
      }
    }
  }
  for (Sequence* seq : in_flight_) {
    if (seq == nullptr) continue;
    seq->step_received = seq->received;
    seq->received = 0;
  }
  if (!invalid.ok()) return invalid;

  // Commit the step's KV. With drafts only the last token's and the
  // accepted drafts' KV is valid: one position per reported token.
  std::vector<int> committed_before(in_flight_.size(), 0);
  for (size_t i = 0; i < in_flight_.size(); ++i) {
    Sequence* seq = in_flight_[i];
    if (seq == nullptr) continue;
    committed_before[i] = seq->num_computed;
    seq->num_computed += seq->draft.empty() ? seq->scheduled_tokens : seq->step_received;
    seq->scheduled_tokens = 0;
  }
  RETURN_IF_ERROR(ForkSampledSequences());

  std::vector<FinishedSequence> finished;
  std::vector<Sequence*> done;
  for (size_t i = 0; i < sampled.size(); ++i) {
    Sequence* seq = resolved_[i];
    if (seq == nullptr) continue;  // aborted while in flight
    // A forking sequence's i-th sample goes to sample i.
    const int index = seq->received++;
    // A sequence's tokens after drafts are its run, in order.
    Sequence* target = (index == 0 || !seq->draft.empty()) ? seq : seq->fork_children[index - 1];
    // A run is cut where plain decoding would have stopped.
    if (target->stopped) continue;
    target->tokens.push_back(sampled[i].token_id);
    if (auto reason = StopReason(*target, sampled[i].stop_string_matched)) {
      finished.push_back({target->request->request.id, target->id,
                          target->sample_index, *reason,
                          target->num_output_tokens()});
      done.push_back(target);
      target->stopped = true;
    }
  }
  // The committed KV's full blocks become findable by later requests (after
  // the append: with drafts the committed tokens are known only now).
  const int bs = options_.block_size;
  for (size_t i = 0; i < in_flight_.size(); ++i) {
    Sequence* seq = in_flight_[i];
    if (seq == nullptr) continue;
    if (blocks_->prefix_caching_enabled() &&
        seq->num_computed / bs > committed_before[i] / bs) {
      UpdateHashes(seq);
      blocks_->CacheFullBlocks(seq->id, seq->block_hashes, seq->num_computed / bs);
    }
    // Blocks reserved for rejected drafts beyond the next position go back.
    if (!seq->draft.empty()) blocks_->TrimSlots(seq->id, seq->num_computed + 1);
  }
  for (Sequence* seq : in_flight_) {
    if (seq == nullptr) continue;
    seq->received = 0;
    seq->pending_samples = 0;
    seq->in_flight_index = -1;
    seq->fork_children.clear();
    seq->draft.clear();
  }
  for (Sequence* seq : done) Destroy(seq);
  in_flight_.clear();
  aborted_in_flight_.clear();
  step_in_flight_ = false;
  return finished;
}

std::vector<SequenceSnapshot> Scheduler::Snapshot() const {
  std::vector<SequenceSnapshot> out;
  out.reserve(sequences_.size());
  auto add = [&](const Sequence* seq) {
    out.push_back({seq->id, seq->request->request.id, seq->running,
                   static_cast<int>(seq->tokens.size()), seq->num_computed,
                   seq->num_output_tokens()});
  };
  for (const Sequence* seq : running_) add(seq);
  for (const auto& [priority, q] : waiting_) {
    for (const Sequence* seq : q) add(seq);
  }
  return out;
}

absl::Status Scheduler::CheckInvariants() const {
  RETURN_IF_ERROR(blocks_->CheckInvariants());
  const int bs = options_.block_size;
  int reserved = 0;
  for (size_t i = 0; i < running_.size(); ++i) {
    const Sequence* seq = running_[i];
    if (i > 0 && !RunsBefore(running_[i - 1], seq)) {
      return absl::InternalError(absl::StrCat("running list out of order at ", i));
    }
    if (!seq->running) {
      return absl::InternalError(absl::StrCat("sequence ", seq->id, " listed as running is not"));
    }
    const int covered = static_cast<int>(blocks_->BlockTable(seq->id).size()) * bs;
    if (covered < seq->num_computed + seq->scheduled_tokens) {
      return absl::InternalError(absl::StrCat(
          "sequence ", seq->id, " has KV for ", covered, " tokens, needs ",
          seq->num_computed + seq->scheduled_tokens));
    }
    if (seq->num_computed >= static_cast<int>(seq->tokens.size())) {
      return absl::InternalError(
          absl::StrCat("running sequence ", seq->id, " has nothing left to compute"));
    }
    reserved += ReservedSlots(*seq);
  }
  if (reserved != reserved_slots_) {
    return absl::InternalError(absl::StrCat("reserved slots ", reserved_slots_,
                                            ", recount ", reserved));
  }
  if (static_cast<int>(running_.size()) + reserved_slots_ > options_.max_num_seqs) {
    return absl::InternalError(absl::StrCat("running ", running_.size(), " + reserved ",
                                            reserved_slots_, " > max_num_seqs"));
  }
  if (blocks_->num_sequences() != static_cast<int>(running_.size())) {
    return absl::InternalError(absl::StrCat(blocks_->num_sequences(),
                                            " block tables for ", running_.size(),
                                            " running sequences"));
  }
  int waiting = 0;
  for (const auto& [priority, q] : waiting_) {
    for (const Sequence* seq : q) {
      ++waiting;
      if (seq->running || seq->num_computed != 0 || blocks_->HasSequence(seq->id) ||
          seq->request->priority != priority) {
        return absl::InternalError(
            absl::StrCat("waiting sequence ", seq->id, " is inconsistent"));
      }
    }
  }
  if (waiting != num_waiting_ ||
      waiting + running_.size() != sequences_.size()) {
    return absl::InternalError(absl::StrCat(waiting, " waiting + ", running_.size(),
                                            " running != ", sequences_.size(),
                                            " sequences (num_waiting_ ", num_waiting_, ")"));
  }
  size_t in_requests = 0;
  for (const auto& [id, r] : requests_) {
    if (r->sequences.empty()) {
      return absl::InternalError(absl::StrCat("request ", id, " has no sequences"));
    }
    in_requests += r->sequences.size();
  }
  if (in_requests != sequences_.size()) {
    return absl::InternalError("request sequence lists disagree with the sequence map");
  }
  return absl::OkStatus();
}

}  // namespace kestrel::scheduler
