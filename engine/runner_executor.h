// The ModelExecutor that runs a real model: translates the scheduler's step
// into model::ModelRunner's batch (one SequenceInput per scheduled sequence,
// logits only where a token is sampled) and applies copy-on-write block
// copies first.
#ifndef KESTREL_ENGINE_RUNNER_EXECUTOR_H_
#define KESTREL_ENGINE_RUNNER_EXECUTOR_H_

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model_executor.h"
#include "model/model_runner.h"

namespace kestrel::engine {

// Not thread-safe (the engine loop is its only caller).
class RunnerExecutor final : public ModelExecutor {
 public:
  // `max_model_len` caps prompt plus output; 0 takes the runner's context.
  static absl::StatusOr<std::unique_ptr<RunnerExecutor>> Create(
      std::unique_ptr<model::ModelRunner> runner, int max_model_len);

  int64_t vocab_size() const override { return runner_->config().vocab_size; }
  int num_kv_blocks() const override { return static_cast<int>(runner_->num_kv_blocks()); }
  int block_size() const override { return static_cast<int>(runner_->block_size()); }
  int max_model_len() const override { return max_model_len_; }
  absl::Status Execute(const scheduler::StepOutput& step, std::vector<float>* logits) override;

  const model::ModelRunner& runner() const { return *runner_; }

 private:
  RunnerExecutor(std::unique_ptr<model::ModelRunner> runner, int max_model_len)
      : runner_(std::move(runner)), max_model_len_(max_model_len) {}

  const std::unique_ptr<model::ModelRunner> runner_;
  const int max_model_len_;
  std::vector<model::SequenceInput> batch_;  // reused across steps
  model::StepOutput out_;
};

}  // namespace kestrel::engine

#endif  // KESTREL_ENGINE_RUNNER_EXECUTOR_H_
