// The CPU sampling op: greedy, bans, penalties, bias, temperature with
// top-k/top-p/min-p driven by the given uniform draw, logprobs against the
// scalar log-softmax reference, rows in parallel, and bad rows as errors.
#include "kernels/cpu/sampling.h"

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/reference.h"
#include "kernels/cpu/test_util.h"
#include "kernels/cpu/thread_pool.h"

namespace kestrel::kernels::cpu {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Runs the op over `logits` ([rows, vocab]) and returns the tokens.
struct Run {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  std::vector<int32_t> top_tokens;
  std::vector<float> top_logprobs;
  absl::Status status;
};

Run Sample1(const std::vector<float>& logits, int64_t vocab, std::vector<SampleRow> rows,
            const std::vector<TokenAdjust>& adjust = {}, int32_t max_top = 0,
            ThreadPool* pool = nullptr) {
  Run r;
  r.tokens.assign(rows.size(), -1);
  r.logprobs.assign(rows.size(), 0.0f);
  r.top_tokens.assign(rows.size() * max_top, -1);
  r.top_logprobs.assign(rows.size() * max_top, 0.0f);
  SampleParams p;
  p.logits = logits.data();
  p.logits_stride = vocab;
  p.num_logits_rows = static_cast<int64_t>(logits.size()) / vocab;
  p.vocab = vocab;
  p.rows = rows.data();
  p.num_rows = static_cast<int64_t>(rows.size());
  p.adjust = adjust.data();
  p.num_adjust = static_cast<int64_t>(adjust.size());
  p.tokens = r.tokens.data();
  p.logprobs = r.logprobs.data();
  p.top_tokens = r.top_tokens.data();
  p.top_logprobs = r.top_logprobs.data();
  p.max_top_logprobs = max_top;
  r.status = Sample(p, pool);
  return r;
}

SampleRow Greedy() { return SampleRow{.temperature = 0.0f}; }

TEST_CASE("greedy takes the argmax: ties to the lowest id, NaN skipped", "[sampling]") {
  const std::vector<float> logits = {1.0f, 3.0f, kNaN, 3.0f, -kInf};
  Run r = Sample1(logits, 5, {Greedy()});
  REQUIRE(r.status.ok());
  CHECK(r.tokens[0] == 1);
  // top_k = 1 is greedy too, whatever the temperature.
  r = Sample1(logits, 5, {SampleRow{.temperature = 0.7f, .top_k = 1, .uniform = 0.99}});
  CHECK(r.tokens[0] == 1);
}

TEST_CASE("bans, penalties and bias apply in order", "[sampling]") {
  const std::vector<float> logits = {2.0f, 1.0f, 0.5f, -1.0f};
  SampleRow row = Greedy();
  // Ban token 0: token 1 wins.
  std::vector<TokenAdjust> adjust = {{.token = 0, .kind = TokenAdjust::kBan}};
  row.adjust_end = 1;
  CHECK(Sample1(logits, 4, {row}, adjust).tokens[0] == 1);
  // Repetition penalty 4 on seen tokens 0 and 1: 0.5, 0.25; token 2 (0.5)
  // ties token 0 and loses on id, so 0.
  adjust = {{.token = 0, .kind = TokenAdjust::kSeen}, {.token = 1, .kind = TokenAdjust::kSeen}};
  row = Greedy();
  row.repetition_penalty = 4.0f;
  row.adjust_end = 2;
  CHECK(Sample1(logits, 4, {row}, adjust).tokens[0] == 0);
  // A negative logit is multiplied: -1 * 4 stays last.
  // Presence/frequency only for generated tokens (count > 0).
  adjust = {{.token = 0, .kind = TokenAdjust::kSeen, .count = 2},
            {.token = 1, .kind = TokenAdjust::kSeen, .count = 0}};
  row = Greedy();
  row.presence_penalty = 0.5f;
  row.frequency_penalty = 0.5f;  // token 0: 2 - 0.5 - 1.0 = 0.5; token 1 stays 1
  row.adjust_end = 2;
  CHECK(Sample1(logits, 4, {row}, adjust).tokens[0] == 1);
  // Bias entries add in order (twice on token 3).
  adjust = {{.token = 3, .kind = TokenAdjust::kBias, .bias = 2.0f},
            {.token = 3, .kind = TokenAdjust::kBias, .bias = 1.5f}};
  row = Greedy();
  row.adjust_end = 2;
  CHECK(Sample1(logits, 4, {row}, adjust).tokens[0] == 3);
}

TEST_CASE("temperature draws follow the uniform: top-k, top-p, min-p", "[sampling]") {
  // Probabilities at temperature 1: softmax of log([0.5, 0.3, 0.15, 0.05]).
  const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.15f),
                                     std::log(0.05f)};
  auto draw = [&](SampleRow row) { return Sample1(logits, 4, {row}).tokens[0]; };
  CHECK(draw({.uniform = 0.0}) == 0);
  CHECK(draw({.uniform = 0.49}) == 0);
  CHECK(draw({.uniform = 0.51}) == 1);
  CHECK(draw({.uniform = 0.81}) == 2);
  CHECK(draw({.uniform = 0.96}) == 3);
  // top_k = 2 renormalizes over {0, 1}: 0.5 / 0.8 = 0.625.
  CHECK(draw({.top_k = 2, .uniform = 0.6}) == 0);
  CHECK(draw({.top_k = 2, .uniform = 0.7}) == 1);
  // top_p = 0.75 keeps {0, 1} (0.8 >= 0.75).
  CHECK(draw({.top_p = 0.75f, .uniform = 0.99}) == 1);
  // min_p = 0.5 keeps tokens with p >= 0.25: {0, 1}.
  CHECK(draw({.min_p = 0.5f, .uniform = 0.99}) == 1);
  // A low temperature sharpens: 0.5^10 dominates.
  CHECK(draw({.temperature = 0.1f, .uniform = 0.99}) == 0);
}

TEST_CASE("logprobs and top logprobs match the reference log-softmax", "[sampling]") {
  const int64_t vocab = 1000;
  const std::vector<float> logits = testing::RandomVector(2 * vocab, 7, -5.0f, 5.0f);
  std::vector<SampleRow> rows = {Greedy(), Greedy()};
  rows[0].logprobs = true;
  rows[0].num_top_logprobs = 5;
  rows[1].logits_row = 1;
  rows[1].logprobs = true;
  Run r = Sample1(logits, vocab, rows, {}, 5);
  REQUIRE(r.status.ok());
  for (int row = 0; row < 2; ++row) {
    std::vector<float> want(vocab);
    reference::LogSoftmax(logits.data() + row * vocab, want.data(), vocab);
    CHECK(r.logprobs[row] == Approx(want[r.tokens[row]]).margin(1e-5));
  }
  std::vector<float> want(vocab);
  reference::LogSoftmax(logits.data(), want.data(), vocab);
  CHECK(r.top_tokens[0] == r.tokens[0]);  // greedy: the most likely
  for (int k = 1; k < 5; ++k) CHECK(r.top_logprobs[k] <= r.top_logprobs[k - 1]);
  for (int k = 0; k < 5; ++k) CHECK(r.top_logprobs[k] == Approx(want[r.top_tokens[k]]).margin(1e-5));
  // Row 1 asked for no alternatives: its slots are untouched.
  CHECK(r.top_tokens[5] == -1);
  // A ban moves the distribution logprobs report.
  std::vector<TokenAdjust> ban = {{.token = r.tokens[0], .kind = TokenAdjust::kBan}};
  SampleRow banned = rows[0];
  banned.adjust_end = 1;
  Run b = Sample1(logits, vocab, {banned}, ban, 5);
  CHECK(b.tokens[0] != r.tokens[0]);
  CHECK(b.logprobs[0] > r.top_logprobs[1] - 1e-6f);
}

TEST_CASE("rows are independent of the thread pool and of each other", "[sampling]") {
  const int64_t vocab = 517, n = 37;
  const std::vector<float> logits = testing::RandomVector(n * vocab, 3, -4.0f, 4.0f);
  std::vector<SampleRow> rows(n);
  for (int i = 0; i < n; ++i) {
    rows[i] = SampleRow{.logits_row = i, .temperature = 0.8f, .top_p = 0.9f,
                        .uniform = (i * 0.37) - static_cast<int>(i * 0.37)};
  }
  auto pool = ThreadPool::Create({.num_threads = 2});
  REQUIRE(pool.ok());
  Run alone = Sample1(logits, vocab, rows);
  Run pooled = Sample1(logits, vocab, rows, {}, 0, pool->get());
  REQUIRE(pooled.status.ok());
  CHECK(alone.tokens == pooled.tokens);
  for (int i = 0; i < n; ++i) {
    Run one = Sample1(logits, vocab, {rows[i]});
    CHECK(one.tokens[0] == alone.tokens[i]);
  }
}

TEST_CASE("bad rows are errors naming the row", "[sampling]") {
  const std::vector<float> logits(8, 0.0f);
  CHECK(Sample1(logits, 4, {SampleRow{.logits_row = 2}}).status.message() ==
        "sample row 0: logits_row 2 is outside [0, 2)");
  std::vector<TokenAdjust> adjust = {{.token = 9, .kind = TokenAdjust::kBan}};
  CHECK(Sample1(logits, 4, {SampleRow{.adjust_end = 1}}, adjust).status.message() ==
        "sample row 0: adjust token 9 is outside [0, 4)");
  CHECK(Sample1(logits, 4, {SampleRow{}, SampleRow{.adjust_begin = 1, .adjust_end = 3}}, adjust)
            .status.message() == "sample row 1: adjust range [1, 3) is outside [0, 1)");
  CHECK(Sample1(logits, 4, {SampleRow{.logprobs = true, .num_top_logprobs = 3}}, {}, 2)
            .status.message() == "sample row 0: num_top_logprobs 3 is outside [0, 2]");
  CHECK(Sample1(logits, 4, {SampleRow{.draft_token = 4}}).status.message() ==
        "sample row 0: draft_token 4 is outside [-1, 4)");
}

// Speculative verification (SampleRow::draft_token).

TEST_CASE("a greedy row with a draft draws the argmax either way", "[sampling][speculative]") {
  const std::vector<float> logits = {0.5f, 2.0f, 1.0f};
  CHECK(Sample1(logits, 3, {SampleRow{.temperature = 0.0f, .draft_token = 1}}).tokens[0] == 1);
  CHECK(Sample1(logits, 3, {SampleRow{.temperature = 0.0f, .draft_token = 2}}).tokens[0] == 1);
}

// Pearson's chi-square of `counts` against `probs` (zero-probability tokens
// must never be drawn: +inf).
double ChiSquare(const std::vector<int>& counts, const std::vector<double>& probs, int total) {
  double chi2 = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    const double expected = probs[i] * total;
    if (expected == 0) {
      if (counts[i] > 0) return kInf;
      continue;
    }
    chi2 += (counts[i] - expected) * (counts[i] - expected) / expected;
  }
  return chi2;
}

TEST_CASE("a sampled row with a draft follows the target distribution (rejection rule)",
          "[sampling][speculative]") {
  // Target at temperature 1: [0.4, 0.3, 0.2, 0.1]. With top_k = 3 the
  // target is [4/9, 3/9, 2/9, 0]: a draft outside the kept set (3) is never
  // accepted.
  const std::vector<float> logits = {std::log(0.4f), std::log(0.3f), std::log(0.2f),
                                     std::log(0.1f)};
  struct Case {
    int32_t top_k;
    int32_t draft;
    std::vector<double> target;
  };
  const std::vector<Case> cases = {
      {0, 0, {0.4, 0.3, 0.2, 0.1}},        {0, 2, {0.4, 0.3, 0.2, 0.1}},
      {0, 3, {0.4, 0.3, 0.2, 0.1}},        {3, 1, {4 / 9.0, 3 / 9.0, 2 / 9.0, 0}},
      {3, 3, {4 / 9.0, 3 / 9.0, 2 / 9.0, 0}},
  };
  constexpr int kDraws = 20000;
  // chi-square with 3 degrees of freedom: P(chi2 > 16.27) = 0.001. Always
  // accepting the draft, or drawing from the full target after a rejection
  // (the draft's mass counted twice), scores in the hundreds or more.
  constexpr double kBound = 16.27;
  for (const Case& c : cases) {
    CAPTURE(c.top_k, c.draft);
    std::mt19937_64 rng(1234 + c.draft);
    std::uniform_real_distribution<double> unif(0.0, 1.0);
    std::vector<SampleRow> rows(kDraws);
    for (SampleRow& row : rows) {
      row.top_k = c.top_k;
      row.draft_token = c.draft;
      row.accept_uniform = unif(rng);
      row.uniform = unif(rng);
    }
    // Every row reads the same logits row.
    Run r = Sample1(logits, 4, rows);
    REQUIRE(r.status.ok());
    std::vector<int> counts(4, 0);
    for (int i = 0; i < kDraws; ++i) {
      ++counts[r.tokens[i]];
      // The token equals the draft exactly when accept_uniform < p(draft).
      CHECK((r.tokens[i] == c.draft) == (rows[i].accept_uniform < c.target[c.draft]));
    }
    CHECK(ChiSquare(counts, c.target, kDraws) < kBound);
    // The wrong rules this test exists to catch would fail the bound.
    std::vector<int> always_accept(4, 0);
    always_accept[c.draft] = kDraws;
    CHECK(ChiSquare(always_accept, c.target, kDraws) > kBound);
    std::vector<int> double_counted(4, 0);
    for (int t = 0; t < 4; ++t) {
      const double p = c.target[t];
      double_counted[t] = static_cast<int>(
          kDraws * (t == c.draft ? p + (1 - p) * p : (1 - c.target[c.draft]) * p));
    }
    if (c.target[c.draft] > 0) CHECK(ChiSquare(double_counted, c.target, kDraws) > kBound);
  }
}

}  // namespace
}  // namespace kestrel::kernels::cpu
