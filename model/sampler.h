// Sampling parameters (OpenAI/vLLM: greedy, temperature, top-k, top-p,
// min-p, repetition/presence/frequency penalties, logit_bias, top-N
// logprobs) and each sample's host-side sampling state. The draw itself is a
// backend op (kernels/ops.h: Ops::Sample). Each sample owns its random
// generator, so a seeded request draws the same tokens whatever else is in
// the batch.
#ifndef KESTREL_MODEL_SAMPLER_H_
#define KESTREL_MODEL_SAMPLER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/ops.h"

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

// The draws of Ops::Sample (host copies of its outputs) as SampledTokens,
// one per row: the token and, for rows that asked, its logprob and
// num_top_logprobs alternatives. top_tokens/top_logprobs: [rows, max_top].
std::vector<SampledToken> CollectDraws(std::span<const kernels::SampleRow> rows,
                                       const int32_t* tokens, const float* logprobs,
                                       const int32_t* top_tokens, const float* top_logprobs,
                                       int32_t max_top);

// One sample's sampling state on the host: its parameters, its own random
// generator and the token counts the penalties need. The draw itself runs as
// a backend op (Ops::Sample) over the whole batch; Prepare describes this
// sample's row of it, Commit records the token it drew.
//
//   sampler->Prepare(banned, &row, &adjust);  // one draw from the generator
//   row.logits_row = ...;                      // where its logits are
//   ... Ops::Sample over every row ...
//   sampler->Commit(token);
//
// A seeded sample draws the same tokens whatever else is in the batch: its
// generator is its own, and the op computes each row the same way whatever
// the batch. Not thread-safe; different samples' samplers may be used
// concurrently.
class SequenceSampler {
 public:
  // `prompt_ids` seeds the repetition penalty's set of seen tokens.
  static absl::StatusOr<std::unique_ptr<SequenceSampler>> Create(
      const SamplingParams& params, int64_t vocab_size, std::span<const int32_t> prompt_ids);

  // Fills `row` (all but logits_row) and appends the row's adjustments to
  // `adjust`: `banned` tokens first (their logits become -inf: min_tokens),
  // the seen tokens the penalties need, then logit_bias. Takes one draw
  // from the generator unless the parameters are greedy.
  void Prepare(std::span<const int32_t> banned, kernels::SampleRow* row,
               std::vector<kernels::TokenAdjust>* adjust);
  // Speculative decoding: the row that verifies `draft` (-1: the row after
  // the last draft, a plain draw) given that `preceding` drafts were
  // accepted, which the penalties count as generated. Unless greedy, takes
  // two draws, accept_uniform then uniform, so a seeded request repeats.
  void PrepareDraft(std::span<const int32_t> banned, std::span<const int32_t> preceding,
                    int32_t draft, kernels::SampleRow* row,
                    std::vector<kernels::TokenAdjust>* adjust);
  // Records the token the row drew (for the penalties).
  void Commit(int32_t token);

  const SamplingParams& params() const { return params_; }

 private:
  SequenceSampler(const SamplingParams& params, uint64_t seed);
  // Prepare without the draw, with `counts` as the generated tokens.
  void PrepareRow(std::span<const int32_t> banned, const std::map<int32_t, int32_t>& counts,
                  kernels::SampleRow* row, std::vector<kernels::TokenAdjust>* adjust) const;
  bool greedy() const { return params_.temperature == 0.0f || params_.top_k == 1; }
  double Uniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

  const SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<int32_t> prompt_tokens_;     // sorted, unique
  std::map<int32_t, int32_t> out_counts_;  // generated token -> count
};

}  // namespace kestrel::model

#endif  // KESTREL_MODEL_SAMPLER_H_
