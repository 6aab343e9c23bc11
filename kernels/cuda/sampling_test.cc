// The CUDA sampler against the CPU backend's Sample (kernels/cpu/sampling.h)
// on the same logits and rows: the drawn tokens must be identical for every
// parameter combination and many uniforms (ties, near-ties, NaN and -inf
// logits included), logprobs close, outputs of rows that do not ask left
// alone, the logits unchanged; draft tokens (speculative decoding) accepted
// and rejected as on the CPU, token for token; bad rows, adjust tokens and
// draft tokens reported through DeviceError; bad scalars rejected. Only the CUDA runtime API reaches the
// kernels, so the test also runs on a GPU (sampling_test_gpu).
#include "kernels/cuda/sampling.h"
#include "kernels/cuda/elem_test_util.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/sampling.h"
#include "kernels/cpu/test_util.h"

#include "kernels/cuda/device_error.h"

namespace kestrel::cuda {
namespace {

using kernels::SampleParams;
using kernels::SampleRow;
using kernels::TokenAdjust;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr int32_t kTokenSentinel = -7;
constexpr float kLogprobSentinel = 123.0f;

using testing::DeviceArray;

struct Case {
  std::vector<float> logits;  // [num_logits_rows, stride], NaN past vocab
  int64_t stride = 0;
  int64_t num_logits_rows = 0;
  int64_t vocab = 0;
  std::vector<SampleRow> rows;
  std::vector<TokenAdjust> adjust;
  int32_t max_top = 0;
  int64_t rows_in_flight = 3;  // < rows, so blocks loop over rows
};

struct Result {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  std::vector<int32_t> top_tokens;
  std::vector<float> top_logprobs;
  DeviceError error;
};

Result Sentinels(const Case& c) {
  Result r;
  const size_t n = c.rows.size(), top = n * static_cast<size_t>(c.max_top);
  r.tokens.assign(n, kTokenSentinel);
  r.logprobs.assign(n, kLogprobSentinel);
  r.top_tokens.assign(top, kTokenSentinel);
  r.top_logprobs.assign(top, kLogprobSentinel);
  return r;
}

SampleParams Params(const Case& c, const float* logits, const SampleRow* rows,
                    const TokenAdjust* adjust, int32_t* tokens, float* logprobs,
                    int32_t* top_tokens, float* top_logprobs) {
  SampleParams p;
  p.logits = logits;
  p.logits_stride = c.stride;
  p.num_logits_rows = c.num_logits_rows;
  p.vocab = c.vocab;
  p.rows = rows;
  p.num_rows = static_cast<int64_t>(c.rows.size());
  p.adjust = adjust;
  p.num_adjust = static_cast<int64_t>(c.adjust.size());
  p.tokens = tokens;
  p.logprobs = logprobs;
  p.top_tokens = top_tokens;
  p.top_logprobs = top_logprobs;
  p.max_top_logprobs = c.max_top;
  return p;
}

Result RunCpu(const Case& c) {
  Result r = Sentinels(c);
  const SampleParams p = Params(c, c.logits.data(), c.rows.data(), c.adjust.data(),
                                r.tokens.data(), r.logprobs.data(), r.top_tokens.data(),
                                r.top_logprobs.data());
  REQUIRE(kernels::cpu::Sample(p, nullptr).ok());
  return r;
}

Result RunGpu(const Case& c) {
  Result r = Sentinels(c);
  DeviceArray<float> logits(c.logits);
  DeviceArray<SampleRow> rows(c.rows);
  DeviceArray<TokenAdjust> adjust(c.adjust);
  DeviceArray<int32_t> tokens(r.tokens), top_tokens(r.top_tokens);
  DeviceArray<float> logprobs(r.logprobs), top_logprobs(r.top_logprobs);
  const size_t ws_bytes = SampleWorkspaceBytes(c.vocab, c.rows_in_flight);
  // NaN everywhere: the kernel must not read workspace it did not write.
  DeviceArray<unsigned char> workspace(std::vector<unsigned char>(ws_bytes, 0xff));
  DeviceArray<DeviceError> error(std::vector<DeviceError>(1));
  const SampleParams p = Params(c, logits.get(), rows.get(), adjust.get(), tokens.get(),
                                logprobs.get(), top_tokens.get(), top_logprobs.get());
  REQUIRE(Sample(p, workspace.get(), ws_bytes, error.get(), nullptr) == cudaSuccess);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  r.tokens = tokens.Download();
  r.logprobs = logprobs.Download();
  r.top_tokens = top_tokens.Download();
  r.top_logprobs = top_logprobs.Download();
  r.error = error.Download()[0];
  const std::vector<float> after = logits.Download();
  REQUIRE(std::memcmp(after.data(), c.logits.data(), after.size() * sizeof(float)) == 0);
  return r;
}

bool Close(float got, float want) {
  if (std::isnan(want)) return std::isnan(got);
  if (got == want) return true;
  return std::fabs(got - want) <= 1e-5f + 1e-6f * std::fabs(want);
}

std::string Describe(const SampleRow& row) {
  std::ostringstream s;
  s.precision(17);
  s << "logits_row=" << row.logits_row << " T=" << row.temperature << " top_k=" << row.top_k
    << " top_p=" << row.top_p << " min_p=" << row.min_p << " rep=" << row.repetition_penalty
    << " pres=" << row.presence_penalty << " freq=" << row.frequency_penalty
    << " u=" << row.uniform << " draft=" << row.draft_token << " accept_u=" << row.accept_uniform
    << " logprobs=" << row.logprobs << " top=" << row.num_top_logprobs
    << " adjust=[" << row.adjust_begin << "," << row.adjust_end << ")";
  return s.str();
}

// Compares the GPU with the CPU; returns the GPU result for further checks.
Result ExpectSameAsCpu(const Case& c) {
  const Result want = RunCpu(c);
  const Result got = RunGpu(c);
  CHECK(got.error.code == 0);
  int mismatches = 0;
  for (size_t r = 0; r < c.rows.size() && mismatches < 5; ++r) {
    INFO("vocab=" << c.vocab << " row " << r << ": " << Describe(c.rows[r]));
    const bool ok_token = got.tokens[r] == want.tokens[r];
    CHECK(got.tokens[r] == want.tokens[r]);
    if (c.rows[r].logprobs) {
      INFO("logprob got " << got.logprobs[r] << " want " << want.logprobs[r]);
      CHECK(Close(got.logprobs[r], want.logprobs[r]));
    } else {
      CHECK(got.logprobs[r] == kLogprobSentinel);
    }
    for (int32_t j = 0; j < c.max_top; ++j) {
      const size_t i = r * static_cast<size_t>(c.max_top) + static_cast<size_t>(j);
      INFO("top " << j << ": got " << got.top_tokens[i] << "/" << got.top_logprobs[i] << " want "
                  << want.top_tokens[i] << "/" << want.top_logprobs[i]);
      CHECK(got.top_tokens[i] == want.top_tokens[i]);
      CHECK(Close(got.top_logprobs[i], want.top_logprobs[i]));
    }
    if (!ok_token) ++mismatches;
  }
  return got;
}

// Rows [num_logits_rows, stride] of random logits; `quantum` > 0 rounds them
// to multiples of it (many exact ties).
std::vector<float> Logits(int64_t rows, int64_t vocab, int64_t stride, uint32_t seed,
                          float spread, float quantum) {
  std::vector<float> out = kernels::testing::NaNVector(static_cast<size_t>(rows * stride));
  const std::vector<float> v =
      kernels::testing::RandomVector(static_cast<size_t>(rows * vocab), seed, -spread, spread);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < vocab; ++i) {
      float x = v[static_cast<size_t>(r * vocab + i)];
      if (quantum > 0) x = std::round(x / quantum) * quantum;
      out[static_cast<size_t>(r * stride + i)] = x;
    }
  }
  return out;
}

SampleRow Row(int32_t logits_row, float temperature, int32_t top_k, float top_p, float min_p,
              double uniform) {
  SampleRow row;
  row.logits_row = logits_row;
  row.temperature = temperature;
  row.top_k = top_k;
  row.top_p = top_p;
  row.min_p = min_p;
  row.uniform = uniform;
  return row;
}

TEST_CASE("CUDA Sample draws what the CPU draws on small vocabularies", "[cuda][sampling]") {
  for (int64_t vocab : {1, 2, 31}) {
    Case c;
    c.vocab = vocab;
    c.stride = vocab + 3;
    c.num_logits_rows = 3;
    // Row 0: distinct values; row 1: coarse ties; row 2: ties, NaN, -inf, -0.0.
    c.logits = Logits(3, vocab, c.stride, 7 + static_cast<uint32_t>(vocab), 4.0f, 0.0f);
    const std::vector<float> ties = Logits(1, vocab, vocab, 99, 2.0f, 1.0f);
    for (int64_t i = 0; i < vocab; ++i) {
      c.logits[static_cast<size_t>(c.stride + i)] = ties[static_cast<size_t>(i)];
      float special = ties[static_cast<size_t>(i)];
      if (i % 7 == 3) special = kNaN;
      if (i % 5 == 1) special = -kInf;
      if (i % 6 == 2) special = (i % 12 == 2) ? -0.0f : 0.0f;
      c.logits[static_cast<size_t>(2 * c.stride + i)] = special;
    }
    const int32_t v = static_cast<int32_t>(vocab);
    std::mt19937 rng(static_cast<uint32_t>(vocab));
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    int n = 0;
    for (float temperature : {0.0f, 0.6f, 1.7f}) {
      for (int32_t top_k : {0, 1, 2, 5, v}) {
        for (float top_p : {1.0f, 0.9f, 0.4f}) {
          for (float min_p : {0.0f, 0.1f, 0.5f}) {
            if (temperature == 0.0f && (top_p != 1.0f || min_p != 0.0f)) continue;
            for (int u = 0; u < 1; ++u) {
              const double draw = (n % 9 == 0) ? 0.0 : (n % 9 == 1) ? 0.5 : uniform(rng);
              SampleRow row = Row(n % 3, temperature, top_k, top_p, min_p, draw);
              row.logprobs = n % 4 == 0;
              row.num_top_logprobs = row.logprobs ? n % 5 : 0;
              c.rows.push_back(row);
              ++n;
            }
          }
        }
      }
    }
    // The edges of the unit interval.
    for (double draw : {0.0, 0.25, 0.5, 0.75, std::nextafter(1.0, 0.0)}) {
      for (int32_t logits_row = 0; logits_row < 3; ++logits_row) {
        c.rows.push_back(Row(logits_row, 1.0f, 0, 1.0f, 0.0f, draw));
        c.rows.push_back(Row(logits_row, 0.8f, 3, 0.7f, 0.05f, draw));
      }
    }
    c.max_top = 4;
    INFO("vocab " << vocab << ", " << c.rows.size() << " rows");
    ExpectSameAsCpu(c);
  }
}

TEST_CASE("CUDA Sample matches the CPU on ties and near-ties", "[cuda][sampling]") {
  // Equal maxima whose probabilities sum exactly, so uniforms k/4 land on the
  // boundaries; values one ulp apart; equal non-maximal values.
  Case c;
  c.vocab = 40;
  c.stride = 40;
  c.num_logits_rows = 3;
  c.logits.assign(120, -3.0f);
  for (int i : {5, 11, 17, 33}) c.logits[static_cast<size_t>(i)] = 2.0f;
  for (int i = 0; i < 40; ++i) {
    c.logits[static_cast<size_t>(40 + i)] = std::nextafter(1.5f, i % 2 ? 2.0f : 0.0f);
    c.logits[static_cast<size_t>(80 + i)] = static_cast<float>(i % 4) * 0.3f;
  }
  c.logits[40 + 20] = 1.5f;
  for (int32_t logits_row = 0; logits_row < 3; ++logits_row) {
    for (double draw : {0.0, 0.25, 0.5, 0.75, std::nextafter(1.0, 0.0)}) {
      for (int32_t top_k : {0, 2, 6}) {
        for (float top_p : {1.0f, 0.5f}) {
          SampleRow row = Row(logits_row, 1.0f, top_k, top_p, top_k == 6 ? 0.9f : 0.0f, draw);
          row.logprobs = true;
          row.num_top_logprobs = 6;
          c.rows.push_back(row);
        }
      }
    }
  }
  c.max_top = 6;
  ExpectSameAsCpu(c);
}

TEST_CASE("CUDA Sample applies bans, penalties and bias like the CPU", "[cuda][sampling]") {
  Case c;
  c.vocab = 300;
  c.stride = 301;
  c.num_logits_rows = 2;
  c.logits = Logits(2, c.vocab, c.stride, 5, 3.0f, 0.25f);
  std::mt19937 rng(11);
  std::uniform_int_distribution<int32_t> token(0, 299);
  auto add_adjust = [&](int n_ban, int n_seen, int n_bias) {
    const int32_t begin = static_cast<int32_t>(c.adjust.size());
    for (int i = 0; i < n_ban + n_seen + n_bias; ++i) {
      TokenAdjust a;
      // Small ids repeat (several entries for one token, also across kinds).
      a.token = i % 3 == 0 ? token(rng) % 8 : token(rng);
      a.kind = i < n_ban ? TokenAdjust::kBan : i < n_ban + n_seen ? TokenAdjust::kSeen
                                                                    : TokenAdjust::kBias;
      a.count = a.kind == TokenAdjust::kSeen ? (i % 4) : 0;
      a.bias = a.kind == TokenAdjust::kBias ? static_cast<float>(token(rng) % 13) * 0.37f - 2 : 0;
      c.adjust.push_back(a);
    }
    std::shuffle(c.adjust.begin() + begin, c.adjust.end(), rng);
    return std::pair<int32_t, int32_t>(begin, static_cast<int32_t>(c.adjust.size()));
  };
  for (int i = 0; i < 24; ++i) {
    // More than one batch of entries (kThreads = 256) in some rows.
    const auto [begin, end] = i % 4 == 3 ? add_adjust(40, 300, 60) : add_adjust(i % 3, 20, 5);
    SampleRow row = Row(i % 2, i % 5 == 0 ? 0.0f : 0.9f, i % 3 == 0 ? 0 : 20,
                        i % 2 ? 0.85f : 1.0f, i % 6 == 1 ? 0.02f : 0.0f,
                        static_cast<double>(i) / 24.0);
    row.repetition_penalty = i % 3 == 2 ? 1.0f : 1.3f;
    row.presence_penalty = i % 4 == 1 ? 0.0f : 0.4f;
    row.frequency_penalty = i % 5 == 2 ? 0.0f : 0.7f;
    row.adjust_begin = begin;
    row.adjust_end = end;
    row.logprobs = i % 2 == 0;
    row.num_top_logprobs = row.logprobs ? 5 : 0;
    c.rows.push_back(row);
  }
  // A row whose every token is banned but one, and one with all banned.
  {
    const int32_t begin = static_cast<int32_t>(c.adjust.size());
    for (int32_t t = 0; t < 300; ++t) {
      if (t != 123) c.adjust.push_back({t, TokenAdjust::kBan, 0, 0.0f});
    }
    SampleRow row = Row(0, 1.0f, 0, 1.0f, 0.0f, 0.7);
    row.adjust_begin = begin;
    row.adjust_end = static_cast<int32_t>(c.adjust.size());
    row.logprobs = true;
    row.num_top_logprobs = 3;
    c.rows.push_back(row);
    c.adjust.push_back({123, TokenAdjust::kBan, 0, 0.0f});
    row.adjust_end = static_cast<int32_t>(c.adjust.size());
    c.rows.push_back(row);
  }
  c.max_top = 5;
  ExpectSameAsCpu(c);
}

TEST_CASE("CUDA Sample matches the CPU on real vocabulary sizes", "[cuda][sampling]") {
  for (int64_t vocab : {32000, 151936}) {
    Case c;
    c.vocab = vocab;
    c.stride = vocab + (vocab == 32000 ? 4 : 1);  // aligned and unaligned rows
    c.num_logits_rows = 1;
    c.logits = Logits(1, vocab, c.stride, static_cast<uint32_t>(vocab), 6.0f, 0.0f);
    // A peaked head with a tie and near-ties, as a model's logits have.
    c.logits[17] = 14.0f;
    c.logits[vocab - 2] = 14.0f;
    c.logits[500] = std::nextafter(14.0f, 0.0f);
    c.logits[1000] = 12.5f;
    SampleRow full = Row(0, 1.0f, 0, 1.0f, 0.0f, 0.61803398875);
    full.logprobs = true;
    full.num_top_logprobs = 5;
    c.rows.push_back(full);
    if (vocab == 32000) {
      c.rows.push_back(Row(0, 0.7f, 50, 0.9f, 0.05f, 0.3));
      c.rows.push_back(Row(0, 0.0f, 0, 1.0f, 0.0f, 0.0));
    }
    c.max_top = 5;
    c.rows_in_flight = 1;
    INFO("vocab " << vocab);
    ExpectSameAsCpu(c);
  }
}

TEST_CASE("CUDA Sample's last-candidate fallback matches the CPU", "[cuda][sampling]") {
  // A temperature so small that 1/T overflows: every probability is NaN and
  // both samplers fall back to the last candidate (order[n - 1]).
  Case c;
  c.vocab = 50;
  c.stride = 50;
  c.num_logits_rows = 1;
  c.logits = Logits(1, 50, 50, 3, 2.0f, 0.5f);
  for (int32_t top_k : {0, 7}) c.rows.push_back(Row(0, 1e-40f, top_k, 1.0f, 0.0f, 0.5));
  ExpectSameAsCpu(c);
}

TEST_CASE("CUDA Sample reports bad rows and adjust tokens", "[cuda][sampling]") {
  Case c;
  c.vocab = 64;
  c.stride = 64;
  c.num_logits_rows = 2;
  c.logits = Logits(2, 64, 64, 1, 3.0f, 0.0f);
  c.adjust = {{3, TokenAdjust::kBias, 0, 5.0f}, {64, TokenAdjust::kBias, 0, 1.0f},
              {-2, TokenAdjust::kSeen, 1, 0.0f}, {9, TokenAdjust::kBias, 0, 2.0f}};
  c.max_top = 2;
  auto row_with = [&](int32_t logits_row, int32_t begin, int32_t end, int32_t num_top) {
    SampleRow row = Row(logits_row, 1.0f, 0, 1.0f, 0.0f, 0.4);
    row.adjust_begin = begin;
    row.adjust_end = end;
    row.logprobs = true;
    row.num_top_logprobs = num_top;
    return row;
  };

  SECTION("a logits_row outside the logits") {
    c.rows = {row_with(1, 0, 1, 2), row_with(2, 0, 1, 2), row_with(-1, 0, 1, 2)};
    const Result got = RunGpu(c);
    // Blocks run concurrently on a GPU: either bad row may be the first.
    CHECK(got.error.code == static_cast<int32_t>(DeviceErrorCode::kRowIndex));
    CHECK(((got.error.index == 1 && got.error.value == 2) ||
           (got.error.index == 2 && got.error.value == -1)));
    CHECK(got.error.limit == 2);
    CHECK(got.tokens[1] == -1);
    CHECK(got.tokens[2] == -1);
    CHECK(std::isnan(got.logprobs[1]));
    CHECK(got.top_tokens[2] == kTokenSentinel);
    // The good row is sampled as on the CPU.
    Case good = c;
    good.rows = {c.rows[0]};
    CHECK(got.tokens[0] == RunCpu(good).tokens[0]);
    CHECK(got.tokens[0] >= 0);
  }
  SECTION("an adjust range or num_top_logprobs out of range") {
    c.rows = {row_with(0, 2, 5, 0), row_with(0, 3, 1, 0), row_with(0, 0, 0, 3),
              row_with(0, 0, 0, 1)};
    const Result got = RunGpu(c);
    CHECK(got.error.code == static_cast<int32_t>(DeviceErrorCode::kRowIndex));
    const int64_t want_value[] = {5, 3, 3};  // adjust_end, adjust_begin, num_top
    const int64_t want_limit[] = {4, 4, 2};
    REQUIRE(got.error.index >= 0);
    REQUIRE(got.error.index < 3);
    CHECK(got.error.value == want_value[got.error.index]);
    CHECK(got.error.limit == want_limit[got.error.index]);
    CHECK(got.tokens[0] == -1);
    CHECK(got.tokens[1] == -1);
    CHECK(got.tokens[2] == -1);
    CHECK(got.tokens[3] >= 0);
  }
  SECTION("an adjust token outside the vocabulary is skipped") {
    c.rows = {row_with(0, 0, 4, 2)};
    c.rows[0].repetition_penalty = 1.2f;
    c.rows[0].presence_penalty = 0.5f;
    const Result got = RunGpu(c);
    CHECK(got.error.code == static_cast<int32_t>(DeviceErrorCode::kSampleToken));
    CHECK((got.error.index == 1 || got.error.index == 2));
    CHECK(got.error.limit == 64);
    Case skipped = c;
    skipped.adjust = {c.adjust[0], c.adjust[3]};
    skipped.rows[0].adjust_end = 2;
    const Result want = RunCpu(skipped);
    CHECK(got.tokens[0] == want.tokens[0]);
    CHECK(Close(got.logprobs[0], want.logprobs[0]));
    CHECK(got.top_tokens == want.top_tokens);
  }
}

// --- Speculative verification (SampleRow::draft_token) ---

SampleRow DraftRow(int32_t logits_row, float temperature, int32_t top_k, float top_p,
                   float min_p, double uniform, int32_t draft, double accept_uniform) {
  SampleRow row = Row(logits_row, temperature, top_k, top_p, min_p, uniform);
  row.draft_token = draft;
  row.accept_uniform = accept_uniform;
  return row;
}

// Ids of one logits row from most to least likely (the CPU's order).
std::vector<int32_t> Order(const Case& c, int32_t logits_row) {
  const float* x = c.logits.data() + logits_row * c.stride;
  std::vector<int32_t> order(static_cast<size_t>(c.vocab));
  for (int32_t i = 0; i < static_cast<int32_t>(c.vocab); ++i) order[static_cast<size_t>(i)] = i;
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    const bool an = std::isnan(x[a]), bn = std::isnan(x[b]);
    if (an != bn) return bn;
    return !an && x[a] > x[b];
  });
  return order;
}

// Counts the rows whose draft the CPU accepted and rejected (sampled rows).
std::pair<int, int> AcceptedRejected(const Case& c, const Result& cpu) {
  int accepted = 0, rejected = 0;
  for (size_t r = 0; r < c.rows.size(); ++r) {
    const SampleRow& row = c.rows[r];
    if (row.draft_token < 0 || row.temperature == 0.0f || row.top_k == 1) continue;
    (cpu.tokens[r] == row.draft_token ? accepted : rejected) += 1;
  }
  return {accepted, rejected};
}

TEST_CASE("CUDA Sample verifies draft tokens as the CPU does", "[cuda][sampling][speculative]") {
  // Vocabularies on both sides of the rank sort's limit (1024 candidates).
  for (int64_t vocab : {2, 37, 300, 1500}) {
    Case c;
    c.vocab = vocab;
    c.stride = vocab + 1;
    c.num_logits_rows = 3;
    // Row 0: spread logits; row 1: coarse ties with NaN and -inf; row 2: a
    // peaked head over a long tail of negligible probability.
    c.logits = Logits(3, vocab, c.stride, 31 + static_cast<uint32_t>(vocab), 3.0f, 0.0f);
    const std::vector<float> ties = Logits(1, vocab, vocab, 77, 2.0f, 0.5f);
    for (int64_t i = 0; i < vocab; ++i) {
      float t = ties[static_cast<size_t>(i)];
      if (i % 11 == 4) t = kNaN;
      if (i % 13 == 6) t = -kInf;
      c.logits[static_cast<size_t>(c.stride + i)] = t;
      c.logits[static_cast<size_t>(2 * c.stride + i)] = -60.0f + static_cast<float>(i % 17);
    }
    if (vocab > 2) {
      c.logits[static_cast<size_t>(2 * c.stride + 1)] = 0.0f;
      c.logits[static_cast<size_t>(2 * c.stride + vocab - 1)] = -1.0f;
    }
    const int32_t v = static_cast<int32_t>(vocab);
    std::mt19937 rng(static_cast<uint32_t>(vocab) * 7 + 1);
    std::uniform_real_distribution<double> unif(0.0, 1.0);
    std::uniform_int_distribution<int32_t> any_token(0, v - 1);
    int n = 0;
    for (int32_t logits_row = 0; logits_row < 3; ++logits_row) {
      const std::vector<int32_t> order = Order(c, logits_row);
      // Drafts: the most likely token, the next ones, the least likely
      // (NaN or -inf where there are some), and a random one.
      std::vector<int32_t> drafts = {order[0], order[std::min<size_t>(1, order.size() - 1)],
                                     order[std::min<size_t>(4, order.size() - 1)], order.back(),
                                     any_token(rng)};
      for (float temperature : {0.0f, 0.7f, 1.0f, 1.8f}) {
        for (int32_t top_k : {0, 1, 3}) {
          for (float top_p : {1.0f, 0.6f}) {
            for (float min_p : {0.0f, 0.2f}) {
              if (temperature == 0.0f && (top_p != 1.0f || min_p != 0.0f)) continue;
              for (int32_t draft : drafts) {
                // Accept draws at the edges and in between; a plain row
                // (no draft) now and then, so rows with and without mix.
                const double a = (n % 5 == 0) ? 0.0 : (n % 5 == 1) ? std::nextafter(1.0, 0.0)
                                                                   : unif(rng);
                const double u = (n % 7 == 0) ? std::nextafter(1.0, 0.0) : unif(rng);
                SampleRow row = DraftRow(logits_row, temperature, top_k, top_p, min_p, u,
                                         n % 9 == 8 ? -1 : draft, a);
                row.logprobs = n % 6 == 0;
                row.num_top_logprobs = row.logprobs ? 2 : 0;
                c.rows.push_back(row);
                ++n;
              }
            }
          }
        }
      }
    }
    c.max_top = 2;
    INFO("vocab " << vocab << ", " << c.rows.size() << " rows");
    ExpectSameAsCpu(c);
    if (vocab >= 37) {
      const auto [accepted, rejected] = AcceptedRejected(c, RunCpu(c));
      CHECK(accepted > 20);
      CHECK(rejected > 20);
    }
  }
}

TEST_CASE("CUDA Sample verifies drafts over many seeds as the CPU does",
          "[cuda][sampling][speculative]") {
  int accepted = 0, rejected = 0;
  for (uint32_t seed = 0; seed < 24; ++seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<double> unif(0.0, 1.0);
    Case c;
    c.vocab = 50 + static_cast<int64_t>(rng() % 400);
    c.stride = c.vocab + static_cast<int64_t>(rng() % 3);
    c.num_logits_rows = 2;
    c.logits = Logits(2, c.vocab, c.stride, 1000 + seed, 1.0f + static_cast<float>(seed % 5),
                      seed % 3 == 0 ? 0.25f : 0.0f);
    std::uniform_int_distribution<int32_t> any_token(0, static_cast<int32_t>(c.vocab) - 1);
    // A few likely tokens above the rest, as a model's logits have.
    for (int64_t r = 0; r < 2; ++r) {
      for (float lift : {9.0f, 8.0f, 7.0f}) {
        c.logits[static_cast<size_t>(r * c.stride + any_token(rng))] = lift;
      }
    }
    for (int i = 0; i < 16; ++i) {
      const int32_t logits_row = i % 2;
      const std::vector<int32_t> order = Order(c, logits_row);
      // Mostly likely drafts (as prompt lookup proposes), some anywhere.
      const int32_t draft = i % 4 == 3 ? any_token(rng) : order[rng() % 6];
      const float temperature = i % 8 == 7 ? 0.0f : 0.5f + static_cast<float>(unif(rng));
      const int32_t top_k = i % 3 == 0 ? 0 : 2 + static_cast<int32_t>(rng() % 30);
      const float top_p = i % 4 == 1 ? 1.0f : 0.5f + 0.5f * static_cast<float>(unif(rng));
      const float min_p = i % 5 == 2 ? 0.05f : 0.0f;
      c.rows.push_back(DraftRow(logits_row, temperature, top_k, top_p, min_p, unif(rng),
                                i % 6 == 5 ? -1 : draft, unif(rng)));
    }
    INFO("seed " << seed << ", vocab " << c.vocab);
    ExpectSameAsCpu(c);
    const auto [a, r] = AcceptedRejected(c, RunCpu(c));
    accepted += a;
    rejected += r;
  }
  CHECK(accepted > 50);
  CHECK(rejected > 50);
}

TEST_CASE("CUDA Sample rejects a greedy row's draft unless it is the argmax",
          "[cuda][sampling][speculative]") {
  Case c;
  c.vocab = 20;
  c.stride = 20;
  c.num_logits_rows = 1;
  c.logits = Logits(1, 20, 20, 5, 2.0f, 0.0f);
  const int32_t argmax = Order(c, 0)[0];
  for (int32_t draft : {argmax, (argmax + 1) % 20, -1}) {
    c.rows.push_back(DraftRow(0, 0.0f, 0, 1.0f, 0.0f, 0.0, draft, 0.0));
    c.rows.push_back(DraftRow(0, 0.9f, 1, 1.0f, 0.0f, 0.3, draft, 0.99));  // top_k = 1: greedy
  }
  const Result got = ExpectSameAsCpu(c);
  for (int32_t token : got.tokens) CHECK(token == argmax);
}

// The draft is the most likely token and is rejected, and the probability
// left for the draw is a few ulps of 1: the CPU's draw then runs past the
// second candidate into a tail of tokens each below 2^-56 of the top one,
// which the GPU's sorted candidates leave out. It must sort them all and
// draw among them as the CPU does.
TEST_CASE("CUDA Sample draws from the negligible tail after rejecting the top draft",
          "[cuda][sampling][speculative]") {
  for (int64_t vocab : {100, 1500}) {
    Case c;
    c.vocab = vocab;
    c.stride = vocab;
    c.num_logits_rows = 1;
    c.logits.assign(static_cast<size_t>(vocab), -200.0f);
    c.logits[7] = 0.0f;  // the draft
    // Relative probability just above 2^-53: 1 + p rounds up to 1 + 2^-52.
    c.logits[3] = static_cast<float>(std::log(0x1p-53 * 1.01));
    // The tail: 2^-57 and a little less, some 60 tokens, unsorted by id.
    for (int i = 0; i < 60; ++i) {
      const int64_t id = 10 + (i * 37) % (vocab - 10);
      c.logits[static_cast<size_t>(id)] =
          static_cast<float>(std::log(0x1p-57)) - 0.001f * static_cast<float>(i % 13);
    }
    // accept_uniform * (1 + 2^-52) rounds to 1: the draft is rejected.
    const double reject = std::nextafter(1.0, 0.0);
    for (double u : {0.1, 0.5, 0.6, 0.75, 0.9, 0.99, std::nextafter(1.0, 0.0)}) {
      c.rows.push_back(DraftRow(0, 1.0f, 0, 1.0f, 0.0f, u, 7, reject));
    }
    c.rows.push_back(DraftRow(0, 1.0f, 0, 1.0f, 0.0f, 0.9, 7, 0.5));  // accepted
    c.rows.push_back(DraftRow(0, 1.0f, 0, 1.0f, 0.0f, 0.9, -1, 0.0));
    // A negligible draft: rejected, except with accept_uniform 0.
    c.rows.push_back(DraftRow(0, 1.0f, 0, 1.0f, 0.0f, 0.4, 10, 0.5));
    c.rows.push_back(DraftRow(0, 1.0f, 0, 1.0f, 0.0f, 0.4, 10, 0.0));
    c.rows_in_flight = 2;
    INFO("vocab " << vocab);
    const Result got = ExpectSameAsCpu(c);
    const Result want = RunCpu(c);
    // The test reaches the tail: some rejected rows drew a tail token.
    int tail = 0;
    for (size_t r = 0; r < 7; ++r) tail += want.tokens[r] != 3 && want.tokens[r] != 7;
    CHECK(tail >= 2);
    CHECK(want.tokens[7] == 7);
    CHECK(want.tokens[9] != 10);
    CHECK(want.tokens[10] == 10);
    CHECK(got.tokens == want.tokens);
  }
}

TEST_CASE("CUDA Sample reports a draft_token outside [-1, vocab)",
          "[cuda][sampling][speculative]") {
  Case c;
  c.vocab = 16;
  c.stride = 16;
  c.num_logits_rows = 1;
  c.logits = Logits(1, 16, 16, 2, 2.0f, 0.0f);
  for (int32_t draft : {-2, 16}) {
    INFO("draft " << draft);
    c.rows = {DraftRow(0, 1.0f, 0, 1.0f, 0.0f, 0.3, 5, 0.2),
              DraftRow(0, 1.0f, 0, 1.0f, 0.0f, 0.3, draft, 0.2)};
    c.rows[1].logprobs = true;
    const Result got = RunGpu(c);
    CHECK(got.error.code == static_cast<int32_t>(DeviceErrorCode::kDraftToken));
    CHECK(got.error.index == 1);
    CHECK(got.error.value == draft);
    CHECK(got.error.limit == 16);
    CHECK(got.tokens[1] == -1);
    CHECK(std::isnan(got.logprobs[1]));
    Case good = c;
    good.rows = {c.rows[0]};
    CHECK(got.tokens[0] == RunCpu(good).tokens[0]);
  }
}

TEST_CASE("CUDA Sample rejects bad scalar arguments", "[cuda][sampling]") {
  float* logits = nullptr;
  SampleRow* rows = nullptr;
  int32_t* tokens = nullptr;
  void* workspace = nullptr;
  const size_t ws = SampleWorkspaceBytes(10, 1);
  REQUIRE(ws > 0);
  REQUIRE(cudaMalloc(reinterpret_cast<void**>(&logits), 40 * sizeof(float)) == cudaSuccess);
  REQUIRE(cudaMalloc(reinterpret_cast<void**>(&rows), sizeof(SampleRow)) == cudaSuccess);
  REQUIRE(cudaMalloc(reinterpret_cast<void**>(&tokens), sizeof(int32_t)) == cudaSuccess);
  REQUIRE(cudaMalloc(&workspace, ws + 16) == cudaSuccess);
  SampleParams good;
  good.logits = logits;
  good.logits_stride = 10;
  good.num_logits_rows = 4;
  good.vocab = 10;
  good.rows = rows;
  good.num_rows = 1;
  good.tokens = tokens;
  SampleRow row = Row(0, 0.0f, 0, 1.0f, 0.0f, 0.0);
  REQUIRE(cudaMemcpy(rows, &row, sizeof(row), cudaMemcpyHostToDevice) == cudaSuccess);
  CHECK(Sample(good, workspace, ws, nullptr, nullptr) == cudaSuccess);
  CHECK(cudaDeviceSynchronize() == cudaSuccess);

  auto bad = [&](auto mutate, void* ws_ptr = nullptr, size_t bytes = 0) {
    SampleParams p = good;
    mutate(p);
    return Sample(p, ws_ptr ? ws_ptr : workspace, bytes ? bytes : ws, nullptr, nullptr);
  };
  CHECK(bad([](SampleParams& p) { p.num_rows = -1; }) == cudaErrorInvalidValue);
  CHECK(bad([](SampleParams& p) { p.vocab = 0; }) == cudaErrorInvalidValue);
  CHECK(bad([](SampleParams& p) { p.logits_stride = 9; }) == cudaErrorInvalidValue);
  CHECK(bad([](SampleParams& p) { p.num_logits_rows = -1; }) == cudaErrorInvalidValue);
  CHECK(bad([](SampleParams& p) { p.num_adjust = -1; }) == cudaErrorInvalidValue);
  CHECK(bad([](SampleParams& p) { p.num_adjust = 2; }) == cudaErrorInvalidValue);  // null adjust
  CHECK(bad([](SampleParams& p) { p.max_top_logprobs = -1; }) == cudaErrorInvalidValue);
  CHECK(bad([](SampleParams& p) { p.logits = nullptr; }) == cudaErrorInvalidValue);
  CHECK(bad([](SampleParams& p) { p.rows = nullptr; }) == cudaErrorInvalidValue);
  CHECK(bad([](SampleParams& p) { p.tokens = nullptr; }) == cudaErrorInvalidValue);
  CHECK(bad([](SampleParams& p) { p.vocab = int64_t{1} << 31; p.logits_stride = p.vocab; }) ==
        cudaErrorInvalidValue);
  CHECK(bad([](SampleParams&) {}, workspace, ws - 1) == cudaErrorInvalidValue);
  CHECK(bad([](SampleParams&) {}, static_cast<char*>(workspace) + 4, ws) ==
        cudaErrorInvalidValue);
  CHECK(Sample(good, nullptr, ws, nullptr, nullptr) == cudaErrorInvalidValue);
  // No rows: nothing to do, whatever the pointers.
  CHECK(bad([](SampleParams& p) { p.num_rows = 0; p.logits = nullptr; }) == cudaSuccess);
  CHECK(SampleWorkspaceBytes(0, 1) == 0);
  CHECK(SampleWorkspaceBytes(10, 0) == 0);
  CHECK(SampleWorkspaceBytes(10, 3) == 3 * SampleWorkspaceBytes(10, 1));
  cudaFree(logits);
  cudaFree(rows);
  cudaFree(tokens);
  cudaFree(workspace);
}

}  // namespace
}  // namespace kestrel::cuda
