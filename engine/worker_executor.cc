#include "engine/worker_executor.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace kestrel::engine {

absl::StatusOr<std::unique_ptr<WorkerExecutor>> WorkerExecutor::Create(
    std::vector<std::unique_ptr<model::Worker>> workers, int max_model_len) {
  if (workers.size() != 1 || workers.front() == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "WorkerExecutor needs exactly one worker (tensor parallelism is not built yet), got ",
        workers.size()));
  }
  const int context = static_cast<int>(workers.front()->runner().max_context_len());
  if (max_model_len < 0 || max_model_len > context) {
    return absl::InvalidArgumentError(absl::StrCat("max_model_len must be in [0, ", context,
                                                   "] (the model's context), got ", max_model_len));
  }
  if (max_model_len == 0) max_model_len = context;
  return std::unique_ptr<WorkerExecutor>(new WorkerExecutor(std::move(workers), max_model_len));
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
    if (all_rows[s]) {
      input.logits = model::LogitsMode::kAll;
      if (seq.samples) sample_row_of_seq_[s] = rows + n - 1;
      rows += n;
    } else if (seq.samples) {
      input.logits = model::LogitsMode::kLast;
      sample_row_of_seq_[s] = rows++;
    } else {
      input.logits = model::LogitsMode::kNone;
    }
  }
  samples_.assign(in.samples.begin(), in.samples.end());
  for (size_t i = 0; i < samples_.size(); ++i) {
    const int32_t s = samples_[i].logits_row;
    if (s < 0 || s >= num_seqs || sample_row_of_seq_[s] < 0) {
      return absl::InvalidArgumentError(absl::StrCat("execute: sample ", i, " names sequence ", s,
                                                     ", which does not sample in this step"));
    }
    samples_[i].logits_row = sample_row_of_seq_[s];
  }

  model::StepInput step_in;
  step_in.sequences = batch_;
  step_in.block_copies = copies_;
  step_in.samples = samples_;
  step_in.adjust = in.adjust;
  step_in.return_logits = !in.return_logits.empty();
  // One rank today; with tensor parallelism every worker runs the step and
  // rank 0's draws are the step's.
  RETURN_IF_ERROR(workers_.front()->Execute(step_in, &out_));
  out->sampled.swap(out_.sampled);
  out->logits.clear();
  if (!in.return_logits.empty()) {
    const size_t vocab = static_cast<size_t>(out_.vocab_size);
    for (int32_t s : in.return_logits) {
      const size_t first = static_cast<size_t>(out_.first_row[s]);
      const size_t n = step.scheduled[s].token_ids.size();
      out->logits.insert(out->logits.end(), out_.logits.begin() + first * vocab,
                         out_.logits.begin() + (first + n) * vocab);
    }
  }
  return absl::OkStatus();
}

}  // namespace kestrel::engine
