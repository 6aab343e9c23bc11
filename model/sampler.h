// Picks the next token of one request from its logits: greedy, temperature,
// top-k, top-p, min-p, repetition/presence/frequency penalties, logit_bias,
// and top-N logprobs. Each request owns its sampler and its random generator,
// so a seeded request draws the same tokens whatever else is in the batch.
#ifndef KESTREL_MODEL_SAMPLER_H_
#define KESTREL_MODEL_SAMPLER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kestrel::model {

// OpenAI/vLLM-style sampling parameters. Defaults sample from the model's
// distribution unchanged.
struct SamplingParams {
  // 0 picks the most likely token (greedy, after penalties and logit_bias);
  // otherwise logits are divided by it. Range [0, 100].
  float temperature = 1.0f;
  // Keep only the k most likely tokens; 0 (or -1) disables.
  int32_t top_k = 0;
  // Keep the smallest set of most likely tokens whose probability reaches
  // top_p. Range (0, 1]; 1 disables.
  float top_p = 1.0f;
  // Drop tokens less likely than min_p times the most likely one. [0, 1].
  float min_p = 0.0f;
  // HF/vLLM repetition penalty over prompt and generated tokens: a seen
  // token's positive logit is divided by it, a negative one multiplied.
  // (0, 10]; 1 disables.
  float repetition_penalty = 1.0f;
  // OpenAI penalties over generated tokens: logit -= presence * [count > 0]
  // + frequency * count. Range [-2, 2]; 0 disables.
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  // Added to the logit of each listed token; bias in [-100, 100].
  std::vector<std::pair<int32_t, float>> logit_bias = {};
  // Seed of this request's own generator; nullopt draws one at random.
  std::optional<uint64_t> seed = std::nullopt;
  // Report the chosen token's logprob and the top_logprobs most likely
  // alternatives. Logprobs are those of the model's raw distribution
  // (log-softmax of the logits before penalties, bias and temperature), as
  // in OpenAI's API and vLLM's default.
  bool logprobs = false;
  int32_t top_logprobs = 0;  // [0, kMaxTopLogprobs]; requires logprobs

  // OK, or InvalidArgument naming the field and value, e.g.
  // "sampling.top_p must be in (0, 1], got 1.5".
  absl::Status Validate(int64_t vocab_size) const;
};

inline constexpr int32_t kMaxTopLogprobs = 20;

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
};

struct SampledToken {
  int32_t token = 0;
  // Filled only when SamplingParams::logprobs.
  float logprob = 0.0f;
  std::vector<TokenLogprob> top_logprobs;  // most likely first
};

// One request's sampler: its parameters, random generator and the token
// counts the penalties need. Not thread-safe; different requests' samplers
// may run concurrently.
class RequestSampler {
 public:
  // `prompt_ids` seeds the repetition penalty's set of seen tokens.
  static absl::StatusOr<std::unique_ptr<RequestSampler>> Create(
      const SamplingParams& params, int64_t vocab_size, std::span<const int32_t> prompt_ids);

  // Samples from `logits` ([vocab_size] for this request's last position)
  // and records the token as generated (for the penalties).
  // REQUIRES: logits.size() == vocab_size.
  absl::StatusOr<SampledToken> Sample(std::span<const float> logits);

  const SamplingParams& params() const { return params_; }

 private:
  RequestSampler(const SamplingParams& params, int64_t vocab_size, uint64_t seed);

  const SamplingParams params_;
  const int64_t vocab_size_;
  std::mt19937_64 rng_;
  std::vector<uint8_t> in_prompt_;                     // [vocab_size]
  absl::flat_hash_map<int32_t, int32_t> out_counts_;   // generated token -> count
  std::vector<float> scratch_;                         // [vocab_size]
  std::vector<int32_t> order_;                         // [vocab_size]
};

}  // namespace kestrel::model

#endif  // KESTREL_MODEL_SAMPLER_H_
