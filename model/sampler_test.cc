#include "model/sampler.h"

#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/sampling.h"

namespace kestrel::model {
namespace {

// A sample's host state plus the CPU sampling op over one row: what the
// engine and the backend do together for one token.
struct TestSampler {
  std::unique_ptr<SequenceSampler> state;
  int64_t vocab = 0;

  SampledToken Sample(const std::vector<float>& logits) {
    REQUIRE(static_cast<int64_t>(logits.size()) == vocab);
    kernels::SampleRow row;
    std::vector<kernels::TokenAdjust> adjust;
    state->Prepare({}, &row, &adjust);
    int32_t token = -1;
    float logprob = 0;
    std::vector<int32_t> top_tokens(kMaxTopLogprobs);
    std::vector<float> top_logprobs(kMaxTopLogprobs);
    kernels::SampleParams p{.logits = logits.data(), .logits_stride = vocab,
                            .num_logits_rows = 1, .vocab = vocab, .rows = &row, .num_rows = 1,
                            .adjust = adjust.data(),
                            .num_adjust = static_cast<int64_t>(adjust.size()),
                            .tokens = &token, .logprobs = &logprob,
                            .top_tokens = top_tokens.data(), .top_logprobs = top_logprobs.data(),
                            .max_top_logprobs = kMaxTopLogprobs};
    REQUIRE(kernels::cpu::Sample(p, nullptr).ok());
    state->Commit(token);
    return CollectDraws({&row, 1}, &token, &logprob, top_tokens.data(), top_logprobs.data(),
                        kMaxTopLogprobs)[0];
  }
};

TestSampler Make(const SamplingParams& p, int64_t vocab, std::vector<int32_t> prompt = {}) {
  auto s = SequenceSampler::Create(p, vocab, prompt);
  REQUIRE(s.ok());
  return TestSampler{std::move(*s), vocab};
}

int32_t Draw(TestSampler& s, const std::vector<float>& logits) { return s.Sample(logits).token; }

std::string ErrorOf(const SamplingParams& p) {
  absl::Status s = p.Validate(10);
  REQUIRE_FALSE(s.ok());
  return std::string(s.message());
}

TEST_CASE("validation names the field and value", "[sampler]") {
  CHECK(SamplingParams{}.Validate(10).ok());
  CHECK(ErrorOf({.top_p = 1.5f}) == "sampling.top_p must be in (0, 1], got 1.5");
  CHECK(ErrorOf({.top_p = 0.0f}) == "sampling.top_p must be in (0, 1], got 0");
  CHECK(ErrorOf({.temperature = -1.0f}) == "sampling.temperature must be in [0, 100], got -1");
  CHECK(ErrorOf({.temperature = NAN}) == "sampling.temperature must be in [0, 100], got nan");
  CHECK(ErrorOf({.top_k = -5}) == "sampling.top_k must be in {-1, 0} or >= 1, got -5");
  CHECK(ErrorOf({.min_p = 2.0f}) == "sampling.min_p must be in [0, 1], got 2");
  CHECK(ErrorOf({.repetition_penalty = 0.0f}) ==
        "sampling.repetition_penalty must be in (0, 10], got 0");
  CHECK(ErrorOf({.presence_penalty = 3.0f}) == "sampling.presence_penalty must be in [-2, 2], got 3");
  CHECK(ErrorOf({.frequency_penalty = -3.0f}) ==
        "sampling.frequency_penalty must be in [-2, 2], got -3");
  CHECK(ErrorOf({.logit_bias = {{10, 1.0f}}}) == "sampling.logit_bias token must be in [0, 10), got 10");
  CHECK(ErrorOf({.logit_bias = {{3, 101.0f}}}) == "sampling.logit_bias[3] must be in [-100, 100], got 101");
  CHECK(ErrorOf({.logprobs = true, .top_logprobs = 21}) ==
        "sampling.top_logprobs must be in [0, 20], got 21");
  CHECK(ErrorOf({.top_logprobs = 2}) == "sampling.top_logprobs requires sampling.logprobs");
  auto bad_prompt = SequenceSampler::Create({}, 10, std::vector<int32_t>{3, 12});
  REQUIRE_FALSE(bad_prompt.ok());
  CHECK(bad_prompt.status().message() == "prompt token id must be in [0, 10), got 12");
}

TEST_CASE("greedy takes the argmax, ties to the lowest id", "[sampler]") {
  auto s = Make({.temperature = 0.0f}, 5);
  CHECK(Draw(s, {0, 3, 1, 3, -2}) == 1);
  CHECK(Draw(s, {NAN, -1, -5, -1, -9}) == 1);
  auto k1 = Make({.top_k = 1}, 3);
  CHECK(Draw(k1, {0, 1, 2}) == 2);
}

TEST_CASE("sampling follows the distribution", "[sampler]") {
  const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  auto s = Make({.seed = 7}, 3);
  std::map<int32_t, int> counts;
  const int n = 20000;
  for (int i = 0; i < n; ++i) ++counts[Draw(s, logits)];
  CHECK(counts[0] / double(n) == Approx(0.5).margin(0.02));
  CHECK(counts[1] / double(n) == Approx(0.3).margin(0.02));
  CHECK(counts[2] / double(n) == Approx(0.2).margin(0.02));

  // Temperature 0.5 squares the odds: 25 : 9 : 4.
  auto cold = Make({.temperature = 0.5f, .seed = 8}, 3);
  counts.clear();
  for (int i = 0; i < n; ++i) ++counts[Draw(cold, logits)];
  CHECK(counts[0] / double(n) == Approx(25.0 / 38).margin(0.02));
}

TEST_CASE("top-k, top-p and min-p cut the tail", "[sampler]") {
  const std::vector<float> logits = {std::log(0.4f), std::log(0.3f), std::log(0.2f),
                                     std::log(0.1f)};
  auto run = [&](const SamplingParams& p) {
    auto s = Make(p, 4);
    std::map<int32_t, int> counts;
    for (int i = 0; i < 4000; ++i) ++counts[Draw(s, logits)];
    return counts;
  };
  auto k2 = run({.top_k = 2, .seed = 1});
  CHECK(k2.size() == 2);
  CHECK(k2.count(0) == 1);
  CHECK(k2.count(1) == 1);
  CHECK(k2[0] / 4000.0 == Approx(0.4 / 0.7).margin(0.03));
  // 0.4 + 0.3 = 0.7 reaches top_p = 0.65: two tokens kept.
  CHECK(run({.top_p = 0.65f, .seed = 2}).size() == 2);
  CHECK(run({.top_p = 0.75f, .seed = 3}).size() == 3);
  // min_p 0.45: keep p >= 0.18.
  CHECK(run({.min_p = 0.45f, .seed = 4}).size() == 3);
  CHECK(run({.min_p = 0.8f, .seed = 4}).size() == 1);
}

TEST_CASE("the same seed gives the same tokens", "[sampler]") {
  std::vector<float> logits(50);
  for (int i = 0; i < 50; ++i) logits[i] = std::sin(i * 0.7f) * 2;
  auto a = Make({.temperature = 0.8f, .top_p = 0.9f, .seed = 1234}, 50);
  auto b = Make({.temperature = 0.8f, .top_p = 0.9f, .seed = 1234}, 50);
  auto c = Make({.temperature = 0.8f, .top_p = 0.9f, .seed = 999}, 50);
  std::vector<int32_t> ta, tb, tc;
  for (int i = 0; i < 64; ++i) {
    ta.push_back(Draw(a, logits));
    tb.push_back(Draw(b, logits));
    tc.push_back(Draw(c, logits));
  }
  CHECK(ta == tb);
  CHECK(ta != tc);
}

TEST_CASE("penalties and logit_bias", "[sampler]") {
  // Repetition penalty 2 halves token 0's positive logit (it is in the
  // prompt): 4 -> 2 < 3.
  auto rep = Make({.temperature = 0.0f, .repetition_penalty = 2.0f}, 3, {0});
  CHECK(Draw(rep, {4, 3, 0}) == 1);
  // ... and doubles a negative one: token 1 seen now, -1 -> -2 < -1.5.
  CHECK(Draw(rep, {-9, -1, -1.5f}) == 2);

  // Presence penalty applies to generated tokens only.
  auto pres = Make({.temperature = 0.0f, .presence_penalty = 1.5f}, 3, {1});
  CHECK(Draw(pres, {2, 1, 0}) == 0);
  CHECK(Draw(pres, {2, 1, 0}) == 1);  // 2 - 1.5 = 0.5 < 1

  auto freq = Make({.temperature = 0.0f, .frequency_penalty = 0.4f}, 2);
  CHECK(Draw(freq, {1, 0}) == 0);  // count 1 -> 0.6
  CHECK(Draw(freq, {1, 0}) == 0);  // count 2 -> 0.2
  CHECK(Draw(freq, {1, 0}) == 0);  // 1 - 0.8 = 0.2 > 0 still
  CHECK(Draw(freq, {1, 0}) == 1);  // 1 - 1.2 < 0

  auto bias = Make({.temperature = 1.0f, .logit_bias = {{2, 100.0f}}, .seed = 3}, 3);
  for (int i = 0; i < 20; ++i) CHECK(Draw(bias, {5, 5, 0}) == 2);
  auto ban = Make({.temperature = 0.0f, .logit_bias = {{0, -100.0f}}}, 3);
  CHECK(Draw(ban, {50, 1, 0}) == 1);
}

TEST_CASE("logprobs of the chosen token and the top alternatives", "[sampler]") {
  const std::vector<float> logits = {1, 3, 2, 0};
  auto s = Make({.temperature = 0.0f, .logit_bias = {{3, 10.0f}}, .logprobs = true,
                 .top_logprobs = 3},
                4);
  SampledToken drawn = s.Sample(logits);
  const double z = std::log(std::exp(1.0) + std::exp(3.0) + std::exp(2.0) + std::exp(0.0));
  CHECK(drawn.token == 3);  // the bias picks it; logprobs stay those of the raw model
  CHECK(drawn.logprob == Approx(0.0 - z).margin(1e-5));
  REQUIRE(drawn.top_logprobs.size() == 3);
  CHECK(drawn.top_logprobs[0].token == 1);
  CHECK(drawn.top_logprobs[0].logprob == Approx(3.0 - z).margin(1e-5));
  CHECK(drawn.top_logprobs[1].token == 2);
  CHECK(drawn.top_logprobs[2].token == 0);
  auto none = Make({.temperature = 0.0f}, 4);
  CHECK(none.Sample(logits).top_logprobs.empty());
}

}  // namespace
}  // namespace kestrel::model
