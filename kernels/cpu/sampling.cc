#include "kernels/cpu/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"

namespace kestrel::kernels::cpu {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Index of the largest logit; ties to the lowest id, NaN skipped, so greedy
// picks are reproducible.
int32_t ArgMax(const float* x, int64_t n) {
  int32_t best = 0;
  float best_v = kNegInf;
  bool found = false;
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(x[i])) continue;
    if (!found || x[i] > best_v) {
      best_v = x[i];
      best = static_cast<int32_t>(i);
      found = true;
    }
  }
  return best;
}

// Per-thread scratch, reused across the rows of one range.
struct Scratch {
  std::vector<float> masked;  // [vocab] raw logits with bans applied
  std::vector<float> x;       // [vocab] after penalties and bias
  std::vector<int32_t> order;  // [vocab]
  std::vector<double> probs;
};

absl::Status CheckRow(const SampleParams& p, int64_t r) {
  const SampleRow& row = p.rows[r];
  if (row.logits_row < 0 || row.logits_row >= p.num_logits_rows) {
    return absl::InvalidArgumentError(absl::StrCat("sample row ", r, ": logits_row ",
                                                   row.logits_row, " is outside [0, ",
                                                   p.num_logits_rows, ")"));
  }
  if (row.adjust_begin < 0 || row.adjust_begin > row.adjust_end || row.adjust_end > p.num_adjust) {
    return absl::InvalidArgumentError(absl::StrCat("sample row ", r, ": adjust range [",
                                                   row.adjust_begin, ", ", row.adjust_end,
                                                   ") is outside [0, ", p.num_adjust, ")"));
  }
  for (int32_t i = row.adjust_begin; i < row.adjust_end; ++i) {
    if (p.adjust[i].token < 0 || p.adjust[i].token >= p.vocab) {
      return absl::InvalidArgumentError(absl::StrCat("sample row ", r, ": adjust token ",
                                                     p.adjust[i].token, " is outside [0, ",
                                                     p.vocab, ")"));
    }
  }
  if (row.draft_token < -1 || row.draft_token >= p.vocab) {
    return absl::InvalidArgumentError(absl::StrCat("sample row ", r, ": draft_token ",
                                                   row.draft_token, " is outside [-1, ",
                                                   p.vocab, ")"));
  }
  if (row.num_top_logprobs < 0 || row.num_top_logprobs > p.max_top_logprobs) {
    return absl::InvalidArgumentError(absl::StrCat("sample row ", r, ": num_top_logprobs ",
                                                   row.num_top_logprobs, " is outside [0, ",
                                                   p.max_top_logprobs, "]"));
  }
  return absl::OkStatus();
}

void SampleOne(const SampleParams& p, int64_t r, Scratch& s) {
  const SampleRow& row = p.rows[r];
  const int64_t vocab = p.vocab;
  const float* raw = p.logits + row.logits_row * p.logits_stride;
  const TokenAdjust* adjust = p.adjust + row.adjust_begin;
  const int64_t num_adjust = row.adjust_end - row.adjust_begin;

  // Bans (min_tokens) change the distribution logprobs report.
  const float* logits = raw;
  bool banned = false;
  for (int64_t i = 0; i < num_adjust && !banned; ++i) banned = adjust[i].kind == TokenAdjust::kBan;
  if (banned) {
    s.masked.assign(raw, raw + vocab);
    for (int64_t i = 0; i < num_adjust; ++i) {
      if (adjust[i].kind == TokenAdjust::kBan) s.masked[adjust[i].token] = kNegInf;
    }
    logits = s.masked.data();
  }

  std::vector<float>& x = s.x;
  x.assign(logits, logits + vocab);
  if (row.repetition_penalty != 1.0f) {
    for (int64_t i = 0; i < num_adjust; ++i) {
      if (adjust[i].kind != TokenAdjust::kSeen) continue;
      float& v = x[adjust[i].token];
      v = v > 0 ? v / row.repetition_penalty : v * row.repetition_penalty;
    }
  }
  if (row.presence_penalty != 0.0f || row.frequency_penalty != 0.0f) {
    for (int64_t i = 0; i < num_adjust; ++i) {
      if (adjust[i].kind != TokenAdjust::kSeen || adjust[i].count == 0) continue;
      x[adjust[i].token] -=
          row.presence_penalty + row.frequency_penalty * static_cast<float>(adjust[i].count);
    }
  }
  for (int64_t i = 0; i < num_adjust; ++i) {
    if (adjust[i].kind == TokenAdjust::kBias) x[adjust[i].token] += adjust[i].bias;
  }

  std::vector<int32_t>& order = s.order;
  order.resize(static_cast<size_t>(vocab));
  int32_t token;
  if (row.temperature == 0.0f || row.top_k == 1) {
    token = ArgMax(x.data(), vocab);
  } else {
    // Candidates most likely first; ties by id so the order (and hence the
    // draw) is deterministic.
    std::iota(order.begin(), order.end(), 0);
    auto more_likely = [&](int32_t a, int32_t b) {
      const bool an = std::isnan(x[a]), bn = std::isnan(x[b]);
      if (an != bn) return bn;
      if (!an && x[a] != x[b]) return x[a] > x[b];
      return a < b;
    };
    int64_t n = vocab;
    if (row.top_k > 0 && row.top_k < n) {
      std::partial_sort(order.begin(), order.begin() + row.top_k, order.end(), more_likely);
      n = row.top_k;
    } else {
      std::sort(order.begin(), order.end(), more_likely);
    }
    const float inv_t = 1.0f / row.temperature;
    const float max_logit = x[order[0]];
    if (!std::isfinite(max_logit)) {
      token = order[0];  // degenerate row (all -inf/NaN): nothing to draw from
    } else {
      std::vector<double>& probs = s.probs;
      probs.resize(static_cast<size_t>(n));
      double sum = 0;
      for (int64_t i = 0; i < n; ++i) {
        const float v = x[order[i]];
        probs[i] = std::isnan(v) ? 0.0 : std::exp(static_cast<double>((v - max_logit) * inv_t));
        sum += probs[i];
      }
      // min-p relative to the most likely candidate (probs[0] = exp(0) = 1).
      if (row.min_p > 0.0f) {
        int64_t keep = 1;
        while (keep < n && probs[keep] >= row.min_p * probs[0]) ++keep;
        for (int64_t i = keep; i < n; ++i) sum -= probs[i];
        n = keep;
      }
      if (row.top_p < 1.0f) {
        double cum = 0;
        int64_t keep = 0;
        while (keep < n) {
          cum += probs[keep++];
          if (cum >= row.top_p * sum) break;
        }
        n = keep;
        sum = cum;
      }
      // A draft is accepted with its probability; a rejected one is left out
      // of the draw (kernels/ops.h: SampleRow). `skip` is its candidate index.
      int64_t skip = -1;
      double draft_mass = 0;
      if (row.draft_token >= 0) {
        for (int64_t i = 0; i < n; ++i) {
          if (order[i] == row.draft_token) {
            skip = i;
            draft_mass = probs[i];
            break;
          }
        }
      }
      if (skip >= 0 && row.accept_uniform * sum < draft_mass) {
        token = row.draft_token;
      } else {
        const double u = row.uniform * (sum - draft_mass);
        double cum = 0;
        int64_t pick = -1;
        for (int64_t i = 0; i < n; ++i) {
          if (i == skip) continue;
          cum += probs[i];
          pick = i;  // the last candidate catches rounding at the top
          if (u < cum) break;
        }
        // pick < 0 only when the draft was the sole candidate, and then
        // accept_uniform < 1 accepted it above.
        token = order[pick < 0 ? 0 : pick];
      }
    }
  }
  p.tokens[r] = token;

  if (!row.logprobs) return;
  // Log-softmax of the (ban-masked) raw logits, max subtracted first.
  float m = kNegInf;
  for (int64_t i = 0; i < vocab; ++i) {
    if (!std::isnan(logits[i])) m = std::max(m, logits[i]);
  }
  double z = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    if (!std::isnan(logits[i])) z += std::exp(static_cast<double>(logits[i] - m));
  }
  const double log_z = static_cast<double>(m) + std::log(z);
  auto lp = [&](int32_t t) { return static_cast<float>(logits[t] - log_z); };
  p.logprobs[r] = lp(token);
  const int64_t k = std::min<int64_t>(row.num_top_logprobs, vocab);
  if (k == 0) return;
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
    const bool an = std::isnan(logits[a]), bn = std::isnan(logits[b]);
    if (an != bn) return bn;
    if (!an && logits[a] != logits[b]) return logits[a] > logits[b];
    return a < b;
  });
  for (int64_t i = 0; i < k; ++i) {
    p.top_tokens[r * p.max_top_logprobs + i] = order[i];
    p.top_logprobs[r * p.max_top_logprobs + i] = lp(order[i]);
  }
}

}  // namespace

absl::Status Sample(const SampleParams& p, ThreadPool* pool) {
  if (p.num_rows < 0 || p.vocab < 1 || p.logits_stride < p.vocab || p.max_top_logprobs < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sample: num_rows ", p.num_rows, ", vocab ", p.vocab, ", logits_stride ",
        p.logits_stride, ", max_top_logprobs ", p.max_top_logprobs, " are inconsistent"));
  }
  if (p.num_rows == 0) return absl::OkStatus();
  if (p.logits == nullptr || p.rows == nullptr || p.tokens == nullptr ||
      (p.num_adjust > 0 && p.adjust == nullptr)) {
    return absl::InvalidArgumentError("sample: null logits, rows, adjust or tokens");
  }
  bool any_logprobs = false;
  for (int64_t r = 0; r < p.num_rows; ++r) {
    if (absl::Status s = CheckRow(p, r); !s.ok()) return s;
    any_logprobs |= p.rows[r].logprobs;
  }
  if (any_logprobs && (p.logprobs == nullptr ||
                       (p.max_top_logprobs > 0 &&
                        (p.top_tokens == nullptr || p.top_logprobs == nullptr)))) {
    return absl::InvalidArgumentError("sample: logprobs asked for but no output arrays given");
  }
  // One row is a full sort of the vocabulary at worst: rows are independent
  // and each is computed the same way whatever thread runs it.
  ParallelFor(pool, p.num_rows, 1, [&](int64_t begin, int64_t end) {
    Scratch scratch;
    for (int64_t r = begin; r < end; ++r) SampleOne(p, r, scratch);
  });
  return absl::OkStatus();
}

}  // namespace kestrel::kernels::cpu
