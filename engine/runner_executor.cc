#include "engine/runner_executor.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace kestrel::engine {

absl::StatusOr<std::unique_ptr<RunnerExecutor>> RunnerExecutor::Create(
    std::unique_ptr<model::ModelRunner> runner, int max_model_len) {
  if (runner == nullptr) return absl::InvalidArgumentError("RunnerExecutor needs a model runner");
  const int context = static_cast<int>(runner->max_context_len());
  if (max_model_len < 0 || max_model_len > context) {
    return absl::InvalidArgumentError(absl::StrCat("max_model_len must be in [0, ", context,
                                                   "] (the model's context), got ", max_model_len));
  }
  if (max_model_len == 0) max_model_len = context;
  return std::unique_ptr<RunnerExecutor>(new RunnerExecutor(std::move(runner), max_model_len));
}

absl::Status RunnerExecutor::Execute(const scheduler::StepOutput& step, std::vector<float>* logits) {
  for (const scheduler::BlockCopy& copy : step.block_copies) {
    RETURN_IF_ERROR(runner_->CopyKvBlock(copy.src, copy.dst));
  }
  batch_.clear();
  for (const scheduler::ScheduledSequence& seq : step.scheduled) {
    model::SequenceInput& input = batch_.emplace_back();
    input.token_ids = std::span<const int32_t>(seq.token_ids.data(), seq.token_ids.size());
    input.position = seq.position_offset;
    input.block_table = std::span<const int32_t>(seq.block_table.data(), seq.block_table.size());
    input.logits = seq.samples ? model::LogitsMode::kLast : model::LogitsMode::kNone;
  }
  RETURN_IF_ERROR(runner_->Step(batch_, &out_));
  // Rows come back in batch order for the sequences that asked: exactly the
  // order the engine expects.
  logits->swap(out_.logits);
  return absl::OkStatus();
}

}  // namespace kestrel::engine
