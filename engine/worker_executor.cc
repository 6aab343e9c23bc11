#include "engine/worker_executor.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "parallel/in_process_communicator.h"

namespace kestrel::engine {

absl::StatusOr<std::unique_ptr<WorkerExecutor>> WorkerExecutor::Create(
    std::vector<std::unique_ptr<model::Worker>> workers, int max_model_len) {
  if (workers.size() != 1 || workers.front() == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "WorkerExecutor::Create takes one prebuilt worker (tensor parallelism builds its own "
        "through Options), got ",
        workers.size()));
  }
  std::unique_ptr<WorkerExecutor> e(new WorkerExecutor());
  e->workers_ = std::move(workers);
  RETURN_IF_ERROR(e->Init(max_model_len));
  return e;
}

absl::StatusOr<std::unique_ptr<WorkerExecutor>> WorkerExecutor::Create(
    const Options& options, std::shared_ptr<const model::ModelWeights> weights) {
  const int n = options.tensor_parallel_size;
  if (n < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor_parallel_size must be >= 1, got ", n));
  }
  if (n > 1 && options.worker.device != "cpu") {
    return absl::UnimplementedError(absl::StrCat(
        "tensor_parallel_size ", n, " runs on the CPU backend only for now, got device \"",
        options.worker.device, "\" (the NCCL communicator is not wired to the CUDA backend yet)"));
  }
  std::unique_ptr<WorkerExecutor> e(new WorkerExecutor());
  e->fault_injection_ = options.fault_injection;
  model::Worker::Options per_rank = options.worker;
  if (n > 1) {
    if (per_rank.threads == 0) {
      per_rank.threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / n);
    }
    per_rank.runner.kv_cache_bytes /= static_cast<uint64_t>(n);
    ASSIGN_OR_RETURN(e->comms_, parallel::InProcessCommunicator::CreateGroup({.size = n}));
  }
  for (int r = 0; r < n; ++r) {
    model::Worker::Options worker = per_rank;
    worker.rank = r;
    worker.runner.communicator = n > 1 ? e->comms_[r].get() : nullptr;
    absl::StatusOr<std::unique_ptr<model::Worker>> w = model::Worker::Create(worker, weights);
    if (!w.ok()) {
      if (n == 1) return w.status();
      return absl::Status(w.status().code(), absl::StrCat("tensor-parallel rank ", r, " of ", n,
                                                          ": ", w.status().message()));
    }
    e->workers_.push_back(std::move(*w));
  }
  RETURN_IF_ERROR(e->Init(options.max_model_len));
  return e;
}

absl::Status WorkerExecutor::Init(int max_model_len) {
  const int context = static_cast<int>(workers_.front()->runner().max_context_len());
  if (max_model_len < 0 || max_model_len > context) {
    return absl::InvalidArgumentError(absl::StrCat("max_model_len must be in [0, ", context,
                                                   "] (the model's context), got ", max_model_len));
  }
  max_model_len_ = max_model_len == 0 ? context : max_model_len;
  int64_t blocks = workers_.front()->runner().num_kv_blocks();
  for (const auto& w : workers_) blocks = std::min(blocks, w->runner().num_kv_blocks());
  num_kv_blocks_ = static_cast<int>(blocks);
  const int n = static_cast<int>(workers_.size());
  rank_status_.assign(n, absl::OkStatus());
  rank_out_.resize(n);
  rank_time_.assign(n, absl::ZeroDuration());
  if (n > 1 || fault_injection_ != nullptr) {
    for (int r = 0; r < n; ++r) threads_.emplace_back([this, r] { RankLoop(r); });
  }
  return absl::OkStatus();
}

WorkerExecutor::~WorkerExecutor() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  start_cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void WorkerExecutor::RankLoop(int rank) {
  int64_t seen = 0;
  while (true) {
    const model::StepInput* step = nullptr;
    {
      std::unique_lock<std::mutex> lock(mu_);
      start_cv_.wait(lock, [&] { return stop_ || generation_ > seen; });
      if (stop_) return;
      seen = generation_;
      step = step_;
    }
    const absl::Time start = absl::Now();
    absl::Status s = absl::OkStatus();
    if (fault_injection_ != nullptr) s = fault_injection_(rank, seen - 1);
    if (s.ok()) s = workers_[rank]->Execute(*step, &rank_out_[rank]);
    rank_time_[rank] = absl::Now() - start;
    // The others may be waiting in a collective for this rank: release them.
    if (!s.ok() && !comms_.empty()) {
      comms_[rank]->Abort(absl::StrCat("rank ", rank, " failed: ", s.message()));
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      rank_status_[rank] = std::move(s);
      if (--pending_ == 0) done_cv_.notify_one();
    }
  }
}

absl::Status WorkerExecutor::RunOnAllRanks(const model::StepInput& step) {
  const int64_t k = steps_++;
  if (threads_.empty()) return workers_.front()->Execute(step, &rank_out_.front());
  {
    std::unique_lock<std::mutex> lock(mu_);
    step_ = &step;
    pending_ = static_cast<int>(workers_.size());
    ++generation_;
    start_cv_.notify_all();
    done_cv_.wait(lock, [&] { return pending_ == 0; });
    step_ = nullptr;
  }
  // The failing rank's own error, not the ABORTED its peers saw because of it.
  int failed = -1;
  for (int r = 0; r < num_workers(); ++r) {
    if (rank_status_[r].ok()) continue;
    if (failed < 0 || (rank_status_[failed].code() == absl::StatusCode::kAborted &&
                       rank_status_[r].code() != absl::StatusCode::kAborted)) {
      failed = r;
    }
  }
  if (failed < 0) return absl::OkStatus();
  absl::Status error = absl::InternalError(absl::StrCat(
      "tensor-parallel rank ", failed, " of ", num_workers(), " failed at step ", k, ": ",
      rank_status_[failed].message()));
  if (!comms_.empty()) {
    if (absl::Status rebuilt = RebuildGroup(); !rebuilt.ok()) {
      return absl::InternalError(absl::StrCat(error.message(), "; rebuilding the group failed: ",
                                              rebuilt.message()));
    }
  }
  return error;
}

absl::Status WorkerExecutor::RebuildGroup() {
  // Every rank thread is idle (the step is over), so no runner is using
  // the old communicators.
  ASSIGN_OR_RETURN(std::vector<std::unique_ptr<parallel::Communicator>> comms,
                   parallel::InProcessCommunicator::CreateGroup({.size = num_workers()}));
  for (int r = 0; r < num_workers(); ++r) workers_[r]->runner().set_communicator(comms[r].get());
  comms_ = std::move(comms);
  return absl::OkStatus();
}

absl::Status WorkerExecutor::Execute(const ExecuteInput& in, ExecuteOutput* out) {
  const scheduler::StepOutput& step = *in.step;
  const int num_seqs = static_cast<int>(step.scheduled.size());
  copies_.clear();
  for (const scheduler::BlockCopy& copy : step.block_copies) copies_.emplace_back(copy.src, copy.dst);

  // Which sequences return every new token's logits (prompt logits).
  std::vector<uint8_t>& all_rows = all_rows_;
  all_rows.assign(num_seqs, 0);
  for (int32_t s : in.return_logits) {
    if (s < 0 || s >= num_seqs) {
      return absl::InvalidArgumentError(absl::StrCat("execute: return_logits sequence ", s,
                                                     " is outside the step's ", num_seqs));
    }
    all_rows[s] = 1;
  }
  batch_.clear();
  sample_row_of_seq_.assign(num_seqs, -1);
  int32_t rows = 0;
  for (int s = 0; s < num_seqs; ++s) {
    const scheduler::ScheduledSequence& seq = step.scheduled[s];
    model::SequenceInput& input = batch_.emplace_back();
    input.token_ids = std::span<const int32_t>(seq.token_ids.data(), seq.token_ids.size());
    input.position = seq.position_offset;
    input.block_table = std::span<const int32_t>(seq.block_table.data(), seq.block_table.size());
    const int32_t n = static_cast<int32_t>(seq.token_ids.size());
    if (all_rows[s] || seq.num_draft_tokens > 0) {
      // Verifying drafts needs the logits of the last token and of each draft.
      input.logits = model::LogitsMode::kAll;
      if (seq.samples) sample_row_of_seq_[s] = rows + n - 1 - seq.num_draft_tokens;
      rows += n;
    } else if (seq.samples) {
      input.logits = model::LogitsMode::kLast;
      sample_row_of_seq_[s] = rows++;
    } else {
      input.logits = model::LogitsMode::kNone;
    }
  }
  samples_.assign(in.samples.begin(), in.samples.end());
  // The i-th row of a sequence verifying drafts reads its i-th new token's
  // logits; the n rows of a forking sequence share its one row.
  draft_rows_used_.assign(num_seqs, 0);
  for (size_t i = 0; i < samples_.size(); ++i) {
    const int32_t s = samples_[i].logits_row;
    if (s < 0 || s >= num_seqs || sample_row_of_seq_[s] < 0) {
      return absl::InvalidArgumentError(absl::StrCat("execute: sample ", i, " names sequence ", s,
                                                     ", which does not sample in this step"));
    }
    const int drafts = step.scheduled[s].num_draft_tokens;
    if (drafts > 0 && draft_rows_used_[s] > drafts) {
      return absl::InvalidArgumentError(absl::StrCat("execute: sample ", i, " is row ",
                                                     draft_rows_used_[s] + 1, " of sequence ", s,
                                                     ", which verifies only ", drafts, " drafts"));
    }
    samples_[i].logits_row = sample_row_of_seq_[s] + (drafts > 0 ? draft_rows_used_[s]++ : 0);
  }

  model::StepInput step_in;
  step_in.sequences = batch_;
  step_in.block_copies = copies_;
  step_in.samples = samples_;
  step_in.adjust = in.adjust;
  step_in.return_logits = !in.return_logits.empty();
  RETURN_IF_ERROR(RunOnAllRanks(step_in));
  // Rank 0's draws (and logits) are the step's.
  model::StepOutput& rank0 = rank_out_.front();
  out->sampled.swap(rank0.sampled);
  if (threads_.empty()) {
    out->rank_step_times.clear();
  } else {
    out->rank_step_times = rank_time_;
  }
  out->logits.clear();
  if (!in.return_logits.empty()) {
    const size_t vocab = static_cast<size_t>(rank0.vocab_size);
    for (int32_t s : in.return_logits) {
      const size_t first = static_cast<size_t>(rank0.first_row[s]);
      const size_t n = step.scheduled[s].token_ids.size();
      out->logits.insert(out->logits.end(), rank0.logits.begin() + first * vocab,
                         rank0.logits.begin() + (first + n) * vocab);
    }
  }
  return absl::OkStatus();
}

}  // namespace kestrel::engine
