#include "model/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"

namespace kestrel::model {
namespace {

absl::Status RangeError(const char* field, const char* range, double value) {
  return absl::InvalidArgumentError(
      absl::StrCat("sampling.", field, " must be in ", range, ", got ", value));
}

// Index of the largest finite-or-infinite logit; ties to the lowest id, NaN
// skipped, so greedy picks are reproducible.
int32_t ArgMax(std::span<const float> x) {
  int32_t best = 0;
  float best_v = -std::numeric_limits<float>::infinity();
  bool found = false;
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i])) continue;
    if (!found || x[i] > best_v) {
      best_v = x[i];
      best = static_cast<int32_t>(i);
      found = true;
    }
  }
  return best;
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

RequestSampler::RequestSampler(const SamplingParams& params, int64_t vocab_size, uint64_t seed)
    : params_(params),
      vocab_size_(vocab_size),
      rng_(seed),
      in_prompt_(vocab_size, 0),
      scratch_(vocab_size),
      order_(vocab_size) {}

absl::StatusOr<std::unique_ptr<RequestSampler>> RequestSampler::Create(
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
  std::unique_ptr<RequestSampler> s(new RequestSampler(params, vocab_size, seed));
  for (int32_t id : prompt_ids) {
    if (id < 0 || id >= vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("prompt token id must be in [0, ", vocab_size, "), got ", id));
    }
    s->in_prompt_[id] = 1;
  }
  return s;
}

absl::StatusOr<SampledToken> RequestSampler::Sample(std::span<const float> logits) {
  if (static_cast<int64_t>(logits.size()) != vocab_size_) {
    return absl::InvalidArgumentError(absl::StrCat("logits have ", logits.size(),
                                                   " entries, vocab_size is ", vocab_size_));
  }
  const SamplingParams& p = params_;
  std::vector<float>& x = scratch_;
  std::copy(logits.begin(), logits.end(), x.begin());

  if (p.repetition_penalty != 1.0f) {
    auto penalize = [&](int32_t t) {
      x[t] = x[t] > 0 ? x[t] / p.repetition_penalty : x[t] * p.repetition_penalty;
    };
    for (int64_t t = 0; t < vocab_size_; ++t) {
      if (in_prompt_[t] && !out_counts_.contains(static_cast<int32_t>(t))) penalize(t);
    }
    for (const auto& [t, count] : out_counts_) penalize(t);
  }
  if (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
    for (const auto& [t, count] : out_counts_) {
      x[t] -= p.presence_penalty + p.frequency_penalty * static_cast<float>(count);
    }
  }
  for (const auto& [t, bias] : p.logit_bias) x[t] += bias;

  SampledToken out;
  if (p.temperature == 0.0f || p.top_k == 1) {
    out.token = ArgMax(x);
  } else {
    // Candidates most likely first; ties by id so the order (and hence the
    // draw) is deterministic.
    std::iota(order_.begin(), order_.end(), 0);
    auto more_likely = [&](int32_t a, int32_t b) {
      const bool an = std::isnan(x[a]), bn = std::isnan(x[b]);
      if (an != bn) return bn;
      if (!an && x[a] != x[b]) return x[a] > x[b];
      return a < b;
    };
    int64_t n = vocab_size_;
    if (p.top_k > 0 && p.top_k < n) {
      std::partial_sort(order_.begin(), order_.begin() + p.top_k, order_.end(), more_likely);
      n = p.top_k;
    } else {
      std::sort(order_.begin(), order_.end(), more_likely);
    }
    const float inv_t = 1.0f / p.temperature;
    const float max_logit = x[order_[0]];
    if (!std::isfinite(max_logit)) {
      out.token = order_[0];  // degenerate row (all -inf/NaN): nothing to draw from
    } else {
      // probs[i] for candidate order_[i]; reuse the tail of nothing: n <= vocab.
      std::vector<double> probs(n);
      double sum = 0;
      for (int64_t i = 0; i < n; ++i) {
        const float v = x[order_[i]];
        probs[i] = std::isnan(v) ? 0.0 : std::exp(static_cast<double>((v - max_logit) * inv_t));
        sum += probs[i];
      }
      // min-p relative to the most likely candidate (probs[0] before
      // normalization is exp(0) = 1).
      if (p.min_p > 0.0f) {
        int64_t keep = 1;
        while (keep < n && probs[keep] >= p.min_p * probs[0]) ++keep;
        for (int64_t i = keep; i < n; ++i) sum -= probs[i];
        n = keep;
      }
      if (p.top_p < 1.0f) {
        double cum = 0;
        int64_t keep = 0;
        while (keep < n) {
          cum += probs[keep++];
          if (cum >= p.top_p * sum) break;
        }
        n = keep;
        sum = cum;
      }
      // One uniform draw in [0, sum): 53 random bits, independent of any
      // other request's generator.
      const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53 * sum;
      double cum = 0;
      int64_t pick = n - 1;
      for (int64_t i = 0; i < n; ++i) {
        cum += probs[i];
        if (u < cum) {
          pick = i;
          break;
        }
      }
      out.token = order_[pick];
    }
  }

  if (p.logprobs) {
    // Log-softmax of the raw logits, max subtracted first.
    float m = -std::numeric_limits<float>::infinity();
    for (float v : logits) {
      if (!std::isnan(v)) m = std::max(m, v);
    }
    double z = 0;
    for (float v : logits) {
      if (!std::isnan(v)) z += std::exp(static_cast<double>(v - m));
    }
    const double log_z = static_cast<double>(m) + std::log(z);
    auto lp = [&](int32_t t) { return static_cast<float>(logits[t] - log_z); };
    out.logprob = lp(out.token);
    if (p.top_logprobs > 0) {
      const int64_t k = std::min<int64_t>(p.top_logprobs, vocab_size_);
      std::iota(order_.begin(), order_.end(), 0);
      std::partial_sort(order_.begin(), order_.begin() + k, order_.end(), [&](int32_t a, int32_t b) {
        const bool an = std::isnan(logits[a]), bn = std::isnan(logits[b]);
        if (an != bn) return bn;
        if (!an && logits[a] != logits[b]) return logits[a] > logits[b];
        return a < b;
      });
      for (int64_t i = 0; i < k; ++i) out.top_logprobs.push_back({order_[i], lp(order_[i])});
    }
  }
  ++out_counts_[out.token];
  return out;
}

}  // namespace kestrel::model
