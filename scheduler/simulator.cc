// Fake clock + fake model driver for the scheduler, with per-step invariant
// checks and latency/throughput accounting.
#include "scheduler/simulator.h"

#include <algorithm>
#include <random>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace kestrel::scheduler {
namespace {

constexpr TokenId kEos = 2;

enum class Outcome { kNotArrived, kLive, kFinished, kAborted, kRejected, kExpired };

struct SimRequest {
  Request request;
  absl::Time arrival;
  absl::Time cancel_at = absl::InfiniteFuture();
  Outcome outcome = Outcome::kNotArrived;
  int samples_finished = 0;
  // Per sample: tokens reported so far and when the latest one arrived.
  std::vector<int> tokens;
  std::vector<absl::Time> last_token_at;
};

LatencySummary Summarize(std::vector<double> v) {
  LatencySummary s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  auto pct = [&](double p) {
    return v[std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5))];
  };
  s.count = static_cast<int64_t>(v.size());
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / v.size();
  s.p50 = pct(0.5);
  s.p90 = pct(0.9);
  s.p99 = pct(0.99);
  s.max = v.back();
  return s;
}

class Simulation {
 public:
  Simulation(const SimOptions& o, std::unique_ptr<Scheduler> sched)
      : o_(o), sched_(std::move(sched)), rng_(o.seed) {}

  absl::StatusOr<SimReport> Run();

 private:
  int Uniform(int lo, int hi) {
    return std::uniform_int_distribution<int>(lo, std::max(lo, hi))(rng_);
  }
  double Unit() { return std::uniform_real_distribution<double>(0, 1)(rng_); }
  TokenId RandomToken() { return Uniform(10, 31999); }
  void Generate();
  void Arrive();
  void Cancel(absl::Time until);
  absl::Status CheckStep(const StepOutput& out,
                         const absl::flat_hash_set<SequenceId>& decode_ready);
  absl::Status Finish(const FinishedSequence& f);
  absl::Status Fail(absl::string_view what) const {
    return absl::InternalError(absl::StrCat("seed ", o_.seed, " step ", report_.steps,
                                            ": ", what));
  }

  const SimOptions& o_;
  std::unique_ptr<Scheduler> sched_;
  std::mt19937_64 rng_;
  std::vector<SimRequest> reqs_;  // index = id - 1, in arrival order
  size_t next_arrival_ = 0;
  absl::Time now_ = absl::UnixEpoch();
  std::vector<double> ttft_, itl_;
  SimReport report_;
};

void Simulation::Generate() {
  std::vector<std::vector<TokenId>> prefixes(std::max(1, o_.num_shared_prefixes));
  for (auto& p : prefixes) {
    for (int i = 0; i < o_.shared_prefix_tokens; ++i) p.push_back(RandomToken());
  }
  std::exponential_distribution<double> gap(o_.arrival_rate);
  absl::Time t = absl::UnixEpoch();
  const int pool_tokens = o_.scheduler.num_kv_blocks * o_.scheduler.block_size;
  for (int i = 0; i < o_.num_requests; ++i) {
    t += absl::Seconds(gap(rng_));
    SimRequest r;
    r.arrival = t;
    Request& q = r.request;
    q.id = static_cast<RequestId>(i + 1);
    if (o_.shared_prefix_fraction > 0 && Unit() < o_.shared_prefix_fraction) {
      q.prompt_token_ids = prefixes[Uniform(0, static_cast<int>(prefixes.size()) - 1)];
    }
    const int suffix = Uniform(o_.min_prompt_tokens, o_.max_prompt_tokens);
    for (int k = 0; k < suffix; ++k) q.prompt_token_ids.push_back(RandomToken());
    q.max_tokens = Uniform(o_.min_output_tokens, o_.max_output_tokens);
    if (o_.oversize_fraction > 0 && Unit() < o_.oversize_fraction) {
      q.max_tokens = pool_tokens + 1;
    }
    q.priority = Uniform(0, std::max(1, o_.num_priorities) - 1);
    if (o_.multi_sample_fraction > 0 && Unit() < o_.multi_sample_fraction) {
      q.n = Uniform(2, std::max(2, o_.max_n));
    }
    q.eos_token_id = kEos;
    if (o_.deadline_fraction > 0 && Unit() < o_.deadline_fraction) {
      q.deadline = t + absl::Seconds(Unit() * absl::ToDoubleSeconds(o_.max_deadline));
    }
    if (o_.cancel_fraction > 0 && Unit() < o_.cancel_fraction) {
      r.cancel_at = t + absl::Seconds(Unit() * absl::ToDoubleSeconds(o_.max_cancel_delay));
    }
    r.tokens.assign(q.n, 0);
    r.last_token_at.assign(q.n, absl::InfinitePast());
    reqs_.push_back(std::move(r));
  }
}

void Simulation::Arrive() {
  while (next_arrival_ < reqs_.size() && reqs_[next_arrival_].arrival <= now_) {
    SimRequest& r = reqs_[next_arrival_++];
    if (sched_->AddRequest(r.request).ok()) {
      r.outcome = Outcome::kLive;
      report_.prompt_tokens +=
          static_cast<int64_t>(r.request.prompt_token_ids.size());
    } else {
      r.outcome = Outcome::kRejected;
      ++report_.requests_rejected;
    }
  }
}

void Simulation::Cancel(absl::Time until) {
  for (size_t i = 0; i < next_arrival_; ++i) {
    SimRequest& r = reqs_[i];
    if (r.outcome != Outcome::kLive || r.cancel_at > until) continue;
    if (sched_->Abort(r.request.id).ok()) {
      r.outcome = Outcome::kAborted;
      ++report_.requests_aborted;
    }
  }
}

absl::Status Simulation::CheckStep(
    const StepOutput& out, const absl::flat_hash_set<SequenceId>& decode_ready) {
  RETURN_IF_ERROR(sched_->CheckInvariants());
  const Scheduler::Options& so = o_.scheduler;
  if (out.num_batched_tokens > so.max_num_batched_tokens) {
    return Fail(absl::StrCat("token budget exceeded: ", out.num_batched_tokens));
  }
  if (static_cast<int>(out.scheduled.size()) > so.max_num_seqs) {
    return Fail(absl::StrCat("sequence cap exceeded: ", out.scheduled.size()));
  }
  const BlockManager& bm = sched_->block_manager();
  int tokens = 0;
  bool any_prefill = false;
  absl::flat_hash_set<SequenceId> seen;
  for (const ScheduledSequence& s : out.scheduled) {
    if (!seen.insert(s.seq_id).second) {
      return Fail(absl::StrCat("sequence ", s.seq_id, " scheduled twice"));
    }
    const int n = static_cast<int>(s.token_ids.size());
    tokens += n;
    any_prefill |= s.is_prefill;
    const int end = s.position_offset + n;
    if (n == 0 || static_cast<int>(s.block_table.size()) * so.block_size < end) {
      return Fail(absl::StrCat("sequence ", s.seq_id, " table too short for ", end));
    }
    // Every block the step writes must belong to this sequence alone, or
    // another sequence's KV would be overwritten.
    for (int b = s.position_offset / so.block_size; b <= (end - 1) / so.block_size; ++b) {
      if (bm.ref_count(s.block_table[b]) != 1) {
        return Fail(absl::StrCat("sequence ", s.seq_id, " writes shared block ",
                                 s.block_table[b]));
      }
    }
  }
  if (tokens != out.num_batched_tokens) return Fail("num_batched_tokens mismatch");
  if (any_prefill) {
    absl::flat_hash_set<SequenceId> accounted(seen);
    for (SequenceId id : out.preempted) accounted.insert(id);
    for (const FinishedSequence& f : out.finished) accounted.insert(f.seq_id);
    for (SequenceId id : decode_ready) {
      if (!accounted.contains(id)) {
        return Fail(absl::StrCat("decode of sequence ", id,
                                 " skipped while prefill was scheduled"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status Simulation::Finish(const FinishedSequence& f) {
  SimRequest& r = reqs_[f.request_id - 1];
  if (f.reason == FinishReason::kDeadline && r.outcome == Outcome::kExpired) {
    return absl::OkStatus();  // another sample of the same request
  }
  if (r.outcome != Outcome::kLive) {
    return Fail(absl::StrCat("request ", f.request_id, " ended twice"));
  }
  if (f.reason == FinishReason::kDeadline) {
    r.outcome = Outcome::kExpired;
    ++report_.requests_expired;
    return absl::OkStatus();
  }
  if (f.num_output_tokens != r.tokens[f.sample_index]) {
    return Fail(absl::StrCat("request ", f.request_id, " sample ", f.sample_index,
                             " finished with ", f.num_output_tokens,
                             " tokens, the runner produced ", r.tokens[f.sample_index]));
  }
  if (f.reason == FinishReason::kLength && f.num_output_tokens != r.request.max_tokens) {
    return Fail(absl::StrCat("request ", f.request_id, " length-finished at ",
                             f.num_output_tokens));
  }
  if (++r.samples_finished == r.request.n) {
    r.outcome = Outcome::kFinished;
    ++report_.requests_finished;
  }
  return absl::OkStatus();
}

absl::StatusOr<SimReport> Simulation::Run() {
  Generate();
  StepOutput out;
  std::vector<SampledToken> sampled;
  absl::flat_hash_set<SequenceId> decode_ready;
  while (next_arrival_ < reqs_.size() || sched_->has_work()) {
    Arrive();
    Cancel(now_);
    if (!sched_->has_work()) {
      if (next_arrival_ < reqs_.size()) now_ = reqs_[next_arrival_].arrival;
      continue;
    }
    if (++report_.steps > o_.max_steps) return Fail("no progress: step limit reached");
    if (o_.check_invariants) {
      decode_ready.clear();
      for (const SequenceSnapshot& s : sched_->Snapshot()) {
        if (s.running && s.num_tokens - s.num_computed_tokens == 1) {
          decode_ready.insert(s.seq_id);
        }
      }
    }
    RETURN_IF_ERROR(sched_->Step(now_, &out));
    if (o_.check_invariants) RETURN_IF_ERROR(CheckStep(out, decode_ready));
    for (const FinishedSequence& f : out.finished) RETURN_IF_ERROR(Finish(f));
    report_.max_batch_tokens = std::max<int64_t>(report_.max_batch_tokens,
                                                 out.num_batched_tokens);
    const absl::Duration cost = o_.step_overhead +
                                out.num_prefill_tokens * o_.per_prefill_token +
                                out.num_decode_tokens * o_.per_decode_token;
    const absl::Time done = now_ + cost;
    // Build the samples before cancelling: the runner has already run.
    sampled.clear();
    for (const ScheduledSequence& s : out.scheduled) {
      for (int i = 0; i < s.num_samples; ++i) {
        SampledToken t{s.seq_id, RandomToken(), false};
        if (o_.eos_probability > 0 && Unit() < o_.eos_probability) t.token_id = kEos;
        if (o_.stop_string_probability > 0 && Unit() < o_.stop_string_probability) {
          t.stop_string_matched = true;
        }
        sampled.push_back(t);
      }
    }
    // Cancellations that land while the step runs: the scheduler must ignore
    // their samples.
    Cancel(done);
    now_ = done;
    auto finished = sched_->Update(sampled);
    if (!finished.ok()) return finished.status();
    if (o_.check_invariants) RETURN_IF_ERROR(sched_->CheckInvariants());
    // Record tokens of sequences still alive (aborted ones were dropped).
    size_t k = 0;
    for (const ScheduledSequence& s : out.scheduled) {
      for (int i = 0; i < s.num_samples; ++i, ++k) {
        SimRequest& r = reqs_[s.request_id - 1];
        if (r.outcome != Outcome::kLive) continue;
        const int sample = s.sample_index + i;
        if (r.tokens[sample]++ == 0) {
          if (sample == 0) ttft_.push_back(absl::ToDoubleSeconds(now_ - r.arrival));
        } else {
          itl_.push_back(absl::ToDoubleSeconds(now_ - r.last_token_at[sample]));
        }
        r.last_token_at[sample] = now_;
        ++report_.output_tokens;
      }
    }
    for (const FinishedSequence& f : *finished) RETURN_IF_ERROR(Finish(f));
  }

  // Every request must have ended, and every block must be back.
  for (const SimRequest& r : reqs_) {
    if (r.outcome == Outcome::kLive || r.outcome == Outcome::kNotArrived) {
      return Fail(absl::StrCat("request ", r.request.id, " never ended"));
    }
  }
  const BlockManager& bm = sched_->block_manager();
  if (bm.num_used_blocks() != 0 || sched_->num_requests() != 0) {
    return Fail(absl::StrCat(bm.num_used_blocks(), " blocks and ",
                             sched_->num_requests(), " requests leaked"));
  }
  RETURN_IF_ERROR(sched_->CheckInvariants());

  report_.simulated_seconds = absl::ToDoubleSeconds(now_ - absl::UnixEpoch());
  if (report_.simulated_seconds > 0) {
    report_.output_tokens_per_second = report_.output_tokens / report_.simulated_seconds;
  }
  const Scheduler::Stats& st = sched_->stats();
  report_.prefill_tokens_computed = st.prefill_tokens;
  report_.prefix_cached_tokens = st.prefix_cached_tokens;
  report_.preemptions = st.preemptions;
  const BlockManager::Counters& c = bm.counters();
  report_.prefix_hit_blocks = c.prefix_hit_blocks;
  if (c.prefix_query_blocks > 0) {
    report_.prefix_hit_rate =
        static_cast<double>(c.prefix_hit_blocks) / c.prefix_query_blocks;
  }
  report_.ttft = Summarize(std::move(ttft_));
  report_.itl = Summarize(std::move(itl_));
  return report_;
}

}  // namespace

std::string SimReport::ToString() const {
  auto ms = [](const LatencySummary& s) {
    return absl::StrFormat("n=%d mean=%.1fms p50=%.1fms p90=%.1fms p99=%.1fms max=%.1fms",
                           s.count, s.mean * 1e3, s.p50 * 1e3, s.p90 * 1e3,
                           s.p99 * 1e3, s.max * 1e3);
  };
  return absl::StrCat(
      absl::StrFormat("steps %d, simulated %.2fs, %.0f output tok/s\n", steps,
                      simulated_seconds, output_tokens_per_second),
      absl::StrFormat("requests: %d finished, %d aborted, %d rejected, %d expired\n",
                      requests_finished, requests_aborted, requests_rejected,
                      requests_expired),
      absl::StrFormat("prefill: %d prompt tokens, %d computed, %d from prefix cache "
                      "(block hit rate %.3f)\n",
                      prompt_tokens, prefill_tokens_computed, prefix_cached_tokens,
                      prefix_hit_rate),
      absl::StrFormat("preemptions %d, max batch %d tokens\n", preemptions,
                      max_batch_tokens),
      "TTFT: ", ms(ttft), "\nITL:  ", ms(itl), "\n");
}

absl::StatusOr<SimReport> RunSimulation(const SimOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<Scheduler> sched, Scheduler::Create(options.scheduler));
  Simulation sim(options, std::move(sched));
  return sim.Run();
}

}  // namespace kestrel::scheduler
