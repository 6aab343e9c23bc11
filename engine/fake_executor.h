// A deterministic stand-in for a model, for engine and server tests: fast,
// and sensitive to the same mistakes a real model is (a wrong block table,
// a lost KV block or a wrong position changes what it "predicts").
#ifndef KESTREL_ENGINE_FAKE_EXECUTOR_H_
#define KESTREL_ENGINE_FAKE_EXECUTOR_H_

#include <atomic>
#include <cstdint>
#include <vector>

#include "absl/time/time.h"
#include "engine/model_executor.h"

namespace kestrel::engine {

// Its "KV cache" stores the token id at each slot. The logits of a sequence
// peak at NextToken(hash of every token id in the sequence's context, read
// back through its block table), so the predicted continuation is a pure
// function of the whole context. Not thread-safe (like every executor), but
// `set_step_delay` may be called from any thread.
class FakeExecutor final : public ModelExecutor {
 public:
  struct Options {
    int64_t vocab_size = 300;
    int num_kv_blocks = 256;
    int block_size = 16;
    int max_model_len = 1024;
    // Logit of the predicted token; every other token gets 0. With
    // temperature sampling the prediction wins with high probability.
    float peak_logit = 8.0f;
    // Token ids in [0, first_token) are never predicted (reserve them for
    // special tokens in tests).
    int32_t first_token = 3;
    // Sleep per Execute call: simulates compute so tests can act mid-run.
    absl::Duration step_delay = absl::ZeroDuration();
    // Fault injection: the Execute call with this 1-based index fails with
    // INTERNAL (after writing that step's tokens into its cache, as a real
    // model's partial step would); 0 never fails.
    int64_t fail_at_step = 0;
  };

  explicit FakeExecutor(const Options& options);

  int64_t vocab_size() const override { return options_.vocab_size; }
  int num_kv_blocks() const override { return options_.num_kv_blocks; }
  int block_size() const override { return options_.block_size; }
  int max_model_len() const override { return options_.max_model_len; }
  // Draws with the CPU sampling op (kernels/cpu/sampling.h) from logits
  // that peak at Predict(context).
  absl::Status Execute(const ExecuteInput& in, ExecuteOutput* out) override;

  void set_step_delay(absl::Duration delay) {
    step_delay_ns_.store(absl::ToInt64Nanoseconds(delay), std::memory_order_relaxed);
  }
  // Makes Execute call number `step` (1-based, counting every call so far)
  // fail; 0 disarms.
  void set_fail_at_step(int64_t step) { fail_at_step_.store(step, std::memory_order_relaxed); }
  int64_t steps_executed() const { return steps_.load(std::memory_order_relaxed); }

  // The token the fake predicts after `context` (for expected outputs).
  int32_t Predict(const std::vector<int32_t>& context) const;

 private:
  const Options options_;
  std::vector<int32_t> cache_;  // [num_kv_blocks * block_size] token per slot
  std::atomic<int64_t> step_delay_ns_;
  std::atomic<int64_t> fail_at_step_;
  std::atomic<int64_t> steps_{0};
  std::vector<float> logits_;              // [sampling sequences, vocab]
  std::vector<kernels::SampleRow> rows_;   // the engine's rows, mapped to logits_
  std::vector<int32_t> tokens_;
  std::vector<float> logprobs_, top_logprobs_;
  std::vector<int32_t> top_tokens_;
};

}  // namespace kestrel::engine

#endif  // KESTREL_ENGINE_FAKE_EXECUTOR_H_
