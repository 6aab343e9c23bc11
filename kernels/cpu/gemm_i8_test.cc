// Int8-weight GEMM (W8A8: per-channel int8 weights, x quantized per row
// inside the call) against the scalar reference on awkward sizes, on every
// ISA this CPU runs (AVX-512 VNNI, AVX2, scalar): bias/accumulate, strides,
// K tails around every vector width, batch and thread invariance, equality
// across ISAs (the integer dot products are exact), and argument errors.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/reference.h"
#include "kernels/cpu/test_util.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/quantize.h"

namespace kestrel::kernels::cpu {
namespace {

using testing::CompareClose;
using testing::RandomVector;

// Int8 weights [n, ldw] with per-row scales, quantized from random floats.
struct I8Weights {
  std::vector<int8_t> q;
  std::vector<float> scales;
};

I8Weights MakeI8Weights(int64_t n, int64_t k, int64_t ldw, uint32_t seed) {
  const std::vector<float> f = RandomVector(static_cast<size_t>(n * ldw), seed);
  I8Weights w;
  std::vector<int8_t> packed(static_cast<size_t>(n * k));
  w.scales.resize(static_cast<size_t>(n));
  QuantizeRowsI8(f.data(), DType::kF32, n, k, ldw, packed.data(), w.scales.data());
  // Re-stride to ldw, with junk in the padding the kernel must not read.
  w.q.assign(static_cast<size_t>(n * ldw), int8_t{-128});
  for (int64_t j = 0; j < n; ++j) {
    std::memcpy(w.q.data() + j * ldw, packed.data() + j * k, static_cast<size_t>(k));
  }
  return w;
}

GemmParams I8Params(const float* x, int64_t ldx, const I8Weights& w, int64_t ldw, float* y,
                    int64_t ldy, int64_t m, int64_t n, int64_t k) {
  GemmParams p;
  p.x = x;
  p.ldx = ldx;
  p.w = w.q.data();
  p.w_dtype = DType::kI8;
  p.w_scales = w.scales.data();
  p.ldw = ldw;
  p.y = y;
  p.ldy = ldy;
  p.m = m;
  p.n = n;
  p.k = k;
  return p;
}

// The reference does the same integer math and the same F32 epilogue; only
// FMA contraction of the epilogue (scale * acc + bias) can differ.
void RunCase(int64_t m, int64_t n, int64_t k, Isa isa, bool bias, bool accumulate,
             ThreadPool* pool) {
  const int64_t ldx = k + 3, ldw = k + 5, ldy = n + 2;
  const std::vector<float> x = RandomVector(static_cast<size_t>(m * ldx), 21, -2.0f, 2.0f);
  const I8Weights w = MakeI8Weights(n, k, ldw, 22);
  const std::vector<float> b = RandomVector(static_cast<size_t>(n), 23);
  std::vector<float> y = RandomVector(static_cast<size_t>(m * ldy), 24);
  std::vector<float> y_ref = y;
  GemmParams p = I8Params(x.data(), ldx, w, ldw, y.data(), ldy, m, n, k);
  p.bias = bias ? b.data() : nullptr;
  p.accumulate = accumulate;
  INFO("m=" << m << " n=" << n << " k=" << k << " isa=" << IsaName(isa) << " bias=" << bias
            << " acc=" << accumulate);
  REQUIRE(Gemm(p, pool, isa).ok());
  GemmParams r = p;
  r.y = y_ref.data();
  reference::Gemm(r);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = n; j < ldy; ++j) REQUIRE(y[i * ldy + j] == y_ref[i * ldy + j]);
  }
  CHECK(CompareClose(y.data(), y_ref.data(), y.size(), 1e-5f, 1e-5f) == "");
}

TEST_CASE("Int8 Gemm matches the reference on awkward sizes", "[gemm][i8]") {
  for (Isa isa : SupportedIsas()) {
    for (int64_t m : {1, 2, 3, 4, 5, 7, 19}) {
      for (int64_t n : {1, 7, 19, 99}) {
        for (int64_t k : {1, 7, 31, 32, 33, 63, 64, 65, 127, 128, 130}) {
          RunCase(m, n, k, isa, false, false, nullptr);
        }
      }
    }
  }
}

TEST_CASE("Int8 Gemm bias, accumulate, threads, long rows", "[gemm][i8]") {
  auto pool = ThreadPool::Create({.num_threads = 2});
  REQUIRE(pool.ok());
  for (Isa isa : SupportedIsas()) {
    for (int flags = 0; flags < 4; ++flags) {
      RunCase(1, 99, 45, isa, flags & 1, flags & 2, pool->get());
      RunCase(7, 97, 129, isa, flags & 1, flags & 2, pool->get());
      RunCase(19, 100, 64, isa, flags & 1, flags & 2, pool->get());
    }
    RunCase(1, 21, 2048, isa, true, false, nullptr);
    RunCase(3, 21, 4133, isa, true, true, pool->get());
    RunCase(5, 50, 2048, isa, false, true, pool->get());
  }
}

// The reference is exact: a broken kernel (a dropped tail, a wrong sign
// trick) would be off by whole weight steps, far outside the tolerance.
// Against the unquantized F32 product the error is that of 8-bit rounding.
TEST_CASE("Int8 Gemm approximates the float product", "[gemm][i8]") {
  const int64_t m = 4, n = 33, k = 517;
  const std::vector<float> x = RandomVector(static_cast<size_t>(m * k), 31);
  const std::vector<float> wf = RandomVector(static_cast<size_t>(n * k), 32);
  I8Weights w;
  w.q.resize(wf.size());
  w.scales.resize(static_cast<size_t>(n));
  QuantizeRowsI8(wf.data(), DType::kF32, n, k, k, w.q.data(), w.scales.data());
  std::vector<float> exact(static_cast<size_t>(m * n));
  GemmParams f;
  f.x = x.data();
  f.ldx = k;
  f.w = wf.data();
  f.ldw = k;
  f.y = exact.data();
  f.ldy = n;
  f.m = m;
  f.n = n;
  f.k = k;
  reference::Gemm(f);
  for (Isa isa : SupportedIsas()) {
    std::vector<float> y(exact.size());
    REQUIRE(Gemm(I8Params(x.data(), k, w, k, y.data(), n, m, n, k), nullptr, isa).ok());
    // Each factor is off by at most half a step (1/254 of its row max, here
    // ~1): the error of an output has sigma ~ sqrt(k) / 540 = 0.042; 0.3 is
    // 7 sigma, while a dropped tail or a wrong sign is off by ~1.
    INFO("isa=" << IsaName(isa));
    CHECK(CompareClose(y.data(), exact.data(), y.size(), 0.3f) == "");
    CHECK(CompareClose(y.data(), exact.data(), y.size(), 1e-4f) != "");
  }
}

// Row i of a batch must be bit-identical to row i alone and to another
// thread count; and since the int32 dot products are exact, every ISA
// agrees up to the epilogue's FMA contraction.
TEST_CASE("Int8 Gemm is batch and thread invariant", "[gemm][i8]") {
  auto pool = ThreadPool::Create({.num_threads = 3});
  REQUIRE(pool.ok());
  const int64_t m = 11, n = 131, k = 77;
  const std::vector<float> x = RandomVector(static_cast<size_t>(m * k), 5);
  const I8Weights w = MakeI8Weights(n, k, k, 6);
  std::vector<float> first_isa;
  for (Isa isa : SupportedIsas()) {
    std::vector<float> batch(static_cast<size_t>(m * n));
    GemmParams p = I8Params(x.data(), k, w, k, batch.data(), n, m, n, k);
    REQUIRE(Gemm(p, pool->get(), isa).ok());
    for (int64_t i = 0; i < m; ++i) {
      std::vector<float> single(static_cast<size_t>(n));
      GemmParams q = p;
      q.x = x.data() + i * k;
      q.y = single.data();
      q.m = 1;
      REQUIRE(Gemm(q, nullptr, isa).ok());
      INFO("isa=" << IsaName(isa) << " row " << i);
      REQUIRE(std::memcmp(single.data(), batch.data() + i * n, sizeof(float) * n) == 0);
    }
    if (first_isa.empty()) {
      first_isa = batch;
    } else {
      INFO("isa=" << IsaName(isa) << " against scalar");
      CHECK(CompareClose(batch.data(), first_isa.data(), batch.size(), 1e-6f, 1e-6f) == "");
    }
  }
}

// compressed-tensors' symmetric int8 (scale = max / 127.5, clamp to
// [-128, 127]) stores -128 for a row's most negative weight; every ISA must
// take it exactly, against negative activations too (on AVX2 a naive
// sign-flip of w would turn -(-128) into -128).
TEST_CASE("Int8 Gemm takes -128 weights exactly", "[gemm][i8]") {
  const int64_t m = 5, n = 9, k = 133;
  std::vector<float> x = RandomVector(static_cast<size_t>(m * k), 41, -2.0f, 2.0f);
  for (int64_t c = 0; c < k; c += 3) x[c] = -2.0f;  // row 0: many large negatives
  I8Weights w = MakeI8Weights(n, k, k, 42);
  for (size_t i = 0; i < w.q.size(); i += 2) w.q[i] = int8_t{-128};
  for (int64_t c = 0; c < k; ++c) w.q[static_cast<size_t>(c)] = int8_t{-128};  // a whole row
  std::vector<float> y_ref(static_cast<size_t>(m * n));
  GemmParams r = I8Params(x.data(), k, w, k, y_ref.data(), n, m, n, k);
  reference::Gemm(r);
  for (Isa isa : SupportedIsas()) {
    std::vector<float> y(y_ref.size());
    REQUIRE(Gemm(I8Params(x.data(), k, w, k, y.data(), n, m, n, k), nullptr, isa).ok());
    INFO("isa=" << IsaName(isa));
    CHECK(CompareClose(y.data(), y_ref.data(), y.size(), 1e-5f, 1e-5f) == "");
  }
}

TEST_CASE("Int8 Gemm zero rows and validation", "[gemm][i8]") {
  const int64_t n = 5, k = 70;
  const I8Weights w = MakeI8Weights(n, k, k, 7);
  std::vector<float> x(static_cast<size_t>(2 * k), 0.0f);  // an all-zero row: scale 0
  for (int64_t c = 0; c < k; ++c) x[k + c] = 0.5f;
  std::vector<float> y(static_cast<size_t>(2 * n), 9.0f), bias(static_cast<size_t>(n), 0.25f);
  GemmParams p = I8Params(x.data(), k, w, k, y.data(), n, 2, n, k);
  p.bias = bias.data();
  for (Isa isa : SupportedIsas()) {
    REQUIRE(Gemm(p, nullptr, isa).ok());
    for (int64_t j = 0; j < n; ++j) CHECK(y[j] == 0.25f);
  }
  GemmParams bad = p;
  bad.w_scales = nullptr;
  absl::Status s = Gemm(bad, nullptr);
  CHECK(absl::IsInvalidArgument(s));
  CHECK(s.message() == "Gemm: w_dtype I8 needs w_scales, got null");
  bad = p;
  bad.k = 70000;
  bad.ldx = bad.ldw = 70000;
  s = Gemm(bad, nullptr);
  CHECK(absl::IsInvalidArgument(s));
  CHECK(s.message() == "Gemm: k must be <= 65536 for I8 weights, got 70000");
}

}  // namespace
}  // namespace kestrel::kernels::cpu
