#include "model/sampler.h"

#include <algorithm>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"

namespace kestrel::model {
namespace {

absl::Status RangeError(const char* field, const char* range, double value) {
  return absl::InvalidArgumentError(
      absl::StrCat("sampling.", field, " must be in ", range, ", got ", value));
}

}  // namespace

absl::Status SamplingParams::Validate(int64_t vocab_size) const {
  if (!(temperature >= 0.0f && temperature <= 100.0f)) {
    return RangeError("temperature", "[0, 100]", temperature);
  }
  if (top_k < -1) return RangeError("top_k", "{-1, 0} or >= 1", top_k);
  if (!(top_p > 0.0f && top_p <= 1.0f)) return RangeError("top_p", "(0, 1]", top_p);
  if (!(min_p >= 0.0f && min_p <= 1.0f)) return RangeError("min_p", "[0, 1]", min_p);
  if (!(repetition_penalty > 0.0f && repetition_penalty <= 10.0f)) {
    return RangeError("repetition_penalty", "(0, 10]", repetition_penalty);
  }
  if (!(presence_penalty >= -2.0f && presence_penalty <= 2.0f)) {
    return RangeError("presence_penalty", "[-2, 2]", presence_penalty);
  }
  if (!(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f)) {
    return RangeError("frequency_penalty", "[-2, 2]", frequency_penalty);
  }
  for (const auto& [token, bias] : logit_bias) {
    if (token < 0 || token >= vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("sampling.logit_bias token must be in [0, ",
                                                     vocab_size, "), got ", token));
    }
    if (!(bias >= -100.0f && bias <= 100.0f)) {
      return absl::InvalidArgumentError(absl::StrCat("sampling.logit_bias[", token,
                                                     "] must be in [-100, 100], got ", bias));
    }
  }
  if (top_logprobs < 0 || top_logprobs > kMaxTopLogprobs) {
    return RangeError("top_logprobs", "[0, 20]", top_logprobs);
  }
  if (top_logprobs > 0 && !logprobs) {
    return absl::InvalidArgumentError("sampling.top_logprobs requires sampling.logprobs");
  }
  return absl::OkStatus();
}

SequenceSampler::SequenceSampler(const SamplingParams& params, uint64_t seed)
    : params_(params), rng_(seed) {}

absl::StatusOr<std::unique_ptr<SequenceSampler>> SequenceSampler::Create(
    const SamplingParams& params, int64_t vocab_size, std::span<const int32_t> prompt_ids) {
  if (vocab_size <= 0) return absl::InvalidArgumentError("vocab_size must be positive");
  if (absl::Status s = params.Validate(vocab_size); !s.ok()) return s;
  uint64_t seed;
  if (params.seed) {
    seed = *params.seed;
  } else {
    absl::BitGen gen;
    seed = absl::Uniform<uint64_t>(gen);
  }
  std::unique_ptr<SequenceSampler> s(new SequenceSampler(params, seed));
  for (int32_t id : prompt_ids) {
    if (id < 0 || id >= vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("prompt token id must be in [0, ", vocab_size, "), got ", id));
    }
  }
  // Only the repetition penalty looks at the prompt.
  if (params.repetition_penalty != 1.0f) {
    s->prompt_tokens_.assign(prompt_ids.begin(), prompt_ids.end());
    std::sort(s->prompt_tokens_.begin(), s->prompt_tokens_.end());
    s->prompt_tokens_.erase(std::unique(s->prompt_tokens_.begin(), s->prompt_tokens_.end()),
                            s->prompt_tokens_.end());
  }
  return s;
}

void SequenceSampler::Prepare(std::span<const int32_t> banned, kernels::SampleRow* row,
                              std::vector<kernels::TokenAdjust>* adjust) {
  PrepareRow(banned, out_counts_, row, adjust);
  // 53 random bits, one draw per token, from this sample's own generator.
  row->uniform = greedy() ? 0.0 : Uniform();
}

void SequenceSampler::PrepareDraft(std::span<const int32_t> banned,
                                   std::span<const int32_t> preceding, int32_t draft,
                                   kernels::SampleRow* row,
                                   std::vector<kernels::TokenAdjust>* adjust) {
  const SamplingParams& p = params_;
  const bool penalties =
      p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
  if (preceding.empty() || !penalties) {
    PrepareRow(banned, out_counts_, row, adjust);
  } else {
    std::map<int32_t, int32_t> counts = out_counts_;
    for (int32_t token : preceding) ++counts[token];
    PrepareRow(banned, counts, row, adjust);
  }
  row->draft_token = draft;
  if (!greedy()) {
    row->accept_uniform = draft >= 0 ? Uniform() : 0.0;
    row->uniform = Uniform();
  }
}

void SequenceSampler::PrepareRow(std::span<const int32_t> banned,
                                 const std::map<int32_t, int32_t>& counts,
                                 kernels::SampleRow* row,
                                 std::vector<kernels::TokenAdjust>* adjust) const {
  const SamplingParams& p = params_;
  row->temperature = p.temperature;
  row->top_k = p.top_k;
  row->top_p = p.top_p;
  row->min_p = p.min_p;
  row->repetition_penalty = p.repetition_penalty;
  row->presence_penalty = p.presence_penalty;
  row->frequency_penalty = p.frequency_penalty;
  row->logprobs = p.logprobs;
  row->num_top_logprobs = p.logprobs ? p.top_logprobs : 0;
  row->uniform = 0.0;

  using kernels::TokenAdjust;
  row->adjust_begin = static_cast<int32_t>(adjust->size());
  for (int32_t token : banned) adjust->push_back({.token = token, .kind = TokenAdjust::kBan});
  if (p.repetition_penalty != 1.0f) {
    // Every seen token once: the prompt's, then the generated ones.
    for (int32_t token : prompt_tokens_) {
      if (!counts.contains(token)) adjust->push_back({.token = token, .kind = TokenAdjust::kSeen});
    }
  }
  if (p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
    for (const auto& [token, count] : counts) {
      adjust->push_back({.token = token, .kind = TokenAdjust::kSeen, .count = count});
    }
  }
  for (const auto& [token, bias] : p.logit_bias) {
    adjust->push_back({.token = token, .kind = TokenAdjust::kBias, .bias = bias});
  }
  row->adjust_end = static_cast<int32_t>(adjust->size());
}

void SequenceSampler::Commit(int32_t token) { ++out_counts_[token]; }

std::vector<SampledToken> CollectDraws(std::span<const kernels::SampleRow> rows,
                                       const int32_t* tokens, const float* logprobs,
                                       const int32_t* top_tokens, const float* top_logprobs,
                                       int32_t max_top) {
  std::vector<SampledToken> out(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    SampledToken& t = out[i];
    t.token = tokens[i];
    if (!rows[i].logprobs) continue;
    t.logprob = logprobs[i];
    for (int32_t k = 0; k < rows[i].num_top_logprobs; ++k) {
      t.top_logprobs.push_back({top_tokens[i * max_top + k], top_logprobs[i * max_top + k]});
    }
  }
  return out;
}

}  // namespace kestrel::model
