// GEMM against the scalar reference: every ISA this CPU runs, every weight
// dtype, awkward sizes (1, 7, 19, 99 and K tails around the vector widths),
// strides, bias/accumulate, bf16 dot products (native vdpbf16ps on AVX-512,
// emulated on AVX2 and scalar), batch invariance, thread invariance, and
// argument errors.
#include "kernels/cpu/gemm.h"

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/reference.h"
#include "kernels/cpu/test_util.h"
#include "kernels/cpu/thread_pool.h"

namespace kestrel::kernels::cpu {
namespace {

using testing::CompareClose;
using testing::RandomVector;

// Weights of `dtype` holding the values of `f` (already rounded for 16-bit
// types, so the reference and the kernel see identical weights).
struct Weights {
  std::vector<float> f32;
  std::vector<uint16_t> h16;
  const void* data(DType t) const {
    return t == DType::kF32 ? static_cast<const void*>(f32.data())
                            : static_cast<const void*>(h16.data());
  }
};

Weights MakeWeights(size_t n, uint32_t seed, DType t) {
  Weights w;
  w.f32 = RandomVector(n, seed);
  if (t == DType::kBF16) w.h16 = testing::ToBf16(w.f32);
  if (t == DType::kF16) w.h16 = testing::ToF16(w.f32);
  return w;
}

struct Case {
  int64_t m, n, k;
};

// Whether Gemm rounds x to bf16 for this request: every variant does with
// BF16 weights, except AVX-512 on a CPU without AVX512_BF16 (exact path).
bool Bf16DotUsed(Isa isa, DType dtype, bool bf16_dot) {
  return bf16_dot && dtype == DType::kBF16 &&
         (ResolveIsa(isa) != Isa::kAvx512 || GetCpuFeatures().avx512bf16);
}

// Against a reference that rounds x the same way, only the summation order
// differs, except for vdpbf16ps, which flushes denormals and rounds its own
// way inside each pair.
float Tolerance(Isa isa, bool dot_used, int64_t k) {
  if (dot_used && ResolveIsa(isa) == Isa::kAvx512) return 2e-3f;
  return 2e-5f * static_cast<float>(k + 8);
}

void RunCase(const Case& c, DType dtype, Isa isa, bool bias, bool accumulate, bool bf16_dot,
             ThreadPool* pool) {
  const int64_t ldx = c.k + 3, ldw = c.k + (dtype == DType::kF32 ? 1 : 2), ldy = c.n + 5;
  const std::vector<float> x = RandomVector(static_cast<size_t>(c.m * ldx), 1);
  const Weights w = MakeWeights(static_cast<size_t>(c.n * ldw), 2, dtype);
  const std::vector<float> b = RandomVector(static_cast<size_t>(c.n), 3);
  std::vector<float> y = RandomVector(static_cast<size_t>(c.m * ldy), 4);
  std::vector<float> y_ref = y;

  GemmParams p;
  p.x = x.data();
  p.ldx = ldx;
  p.w = w.data(dtype);
  p.w_dtype = dtype;
  p.ldw = ldw;
  p.bias = bias ? b.data() : nullptr;
  p.y = y.data();
  p.ldy = ldy;
  p.m = c.m;
  p.n = c.n;
  p.k = c.k;
  p.accumulate = accumulate;
  p.bf16_dot = bf16_dot;
  const bool dot_used = Bf16DotUsed(isa, dtype, bf16_dot);
  REQUIRE(Gemm(p, pool, isa).ok());

  GemmParams r = p;
  r.y = y_ref.data();
  r.bf16_dot = dot_used;
  reference::Gemm(r);
  const float tol = Tolerance(isa, dot_used, c.k);
  INFO("m=" << c.m << " n=" << c.n << " k=" << c.k << " dtype=" << DTypeName(dtype)
            << " isa=" << IsaName(isa) << " bias=" << bias << " acc=" << accumulate
            << " bf16_dot=" << bf16_dot);
  // Padding between rows (ldy > n) must be untouched.
  for (int64_t i = 0; i < c.m; ++i) {
    for (int64_t j = c.n; j < ldy; ++j) REQUIRE(y[i * ldy + j] == y_ref[i * ldy + j]);
  }
  CHECK(CompareClose(y.data(), y_ref.data(), y.size(), tol, 1e-4f) == "");
}

TEST_CASE("Gemm matches the reference on awkward sizes", "[gemm]") {
  const std::vector<Case> cases = {{1, 1, 1},   {1, 7, 19},  {1, 99, 99}, {2, 19, 33},
                                   {3, 9, 64},  {4, 6, 16},  {5, 13, 31}, {7, 19, 7},
                                   {19, 7, 99}, {8, 50, 130}, {1, 49, 257}};
  for (Isa isa : SupportedIsas()) {
    for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
      for (const Case& c : cases) {
        RunCase(c, dtype, isa, /*bias=*/false, /*accumulate=*/false, false, nullptr);
        if (dtype == DType::kBF16) RunCase(c, dtype, isa, false, false, /*bf16_dot=*/true, nullptr);
      }
    }
  }
}

TEST_CASE("Gemm bias, accumulate, threads and bf16 dot products", "[gemm]") {
  auto pool = ThreadPool::Create({.num_threads = 2});
  REQUIRE(pool.ok());
  const std::vector<Case> cases = {{1, 99, 45}, {7, 97, 19}, {19, 100, 64}};
  for (Isa isa : SupportedIsas()) {
    for (DType dtype : {DType::kF32, DType::kBF16}) {
      for (const Case& c : cases) {
        for (int flags = 0; flags < 8; ++flags) {
          RunCase(c, dtype, isa, flags & 1, flags & 2, flags & 4, pool->get());
        }
      }
    }
  }
}

// Row i of a batch must be bit-identical to computing row i alone, and to a
// run with a different thread count: logits may not depend on the batch.
TEST_CASE("Gemm is batch and thread invariant", "[gemm]") {
  auto pool = ThreadPool::Create({.num_threads = 3});
  REQUIRE(pool.ok());
  const int64_t m = 11, n = 131, k = 77;
  const std::vector<float> x = RandomVector(static_cast<size_t>(m * k), 5);
  for (Isa isa : SupportedIsas()) {
    for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
      for (bool bf16_dot : {false, true}) {
        const Weights w = MakeWeights(static_cast<size_t>(n * k), 6, dtype);
        GemmParams p;
        p.x = x.data();
        p.ldx = k;
        p.w = w.data(dtype);
        p.w_dtype = dtype;
        p.ldw = k;
        p.ldy = n;
        p.n = n;
        p.k = k;
        p.bf16_dot = bf16_dot;
        std::vector<float> batch(static_cast<size_t>(m * n));
        p.y = batch.data();
        p.m = m;
        REQUIRE(Gemm(p, pool->get(), isa).ok());
        for (int64_t i = 0; i < m; ++i) {
          std::vector<float> single(static_cast<size_t>(n));
          GemmParams q = p;
          q.x = x.data() + i * k;
          q.y = single.data();
          q.m = 1;
          REQUIRE(Gemm(q, nullptr, isa).ok());
          INFO("isa=" << IsaName(isa) << " dtype=" << DTypeName(dtype) << " row " << i);
          REQUIRE(std::memcmp(single.data(), batch.data() + i * n, sizeof(float) * n) == 0);
        }
      }
    }
  }
}

// Long rows (down_proj-like K) in the decode (M <= 3) and batch paths: both
// agree with the reference and, bit for bit, with each other.
TEST_CASE("Gemm with long rows", "[gemm]") {
  const int64_t n = 21, k = 4133;
  for (Isa isa : SupportedIsas()) {
    for (bool bf16_dot : {false, true}) {
      for (int64_t m : {1, 2, 3}) {
        RunCase({m, n, k}, DType::kBF16, isa, true, false, bf16_dot, nullptr);
      }
      const std::vector<float> x = RandomVector(static_cast<size_t>(5 * k), 8);
      const Weights w = MakeWeights(static_cast<size_t>(n * k), 9, DType::kBF16);
      GemmParams p{.x = x.data(), .ldx = k, .w = w.data(DType::kBF16), .w_dtype = DType::kBF16,
                   .ldw = k, .ldy = n, .m = 5, .n = n, .k = k, .bf16_dot = bf16_dot};
      std::vector<float> batch(static_cast<size_t>(5 * n)), single(static_cast<size_t>(n));
      p.y = batch.data();
      REQUIRE(Gemm(p, nullptr, isa).ok());
      for (int64_t i = 0; i < 5; ++i) {
        GemmParams q = p;
        q.x = x.data() + i * k;
        q.y = single.data();
        q.m = 1;
        REQUIRE(Gemm(q, nullptr, isa).ok());
        INFO("isa=" << IsaName(isa) << " bf16_dot=" << bf16_dot << " row " << i);
        REQUIRE(std::memcmp(single.data(), batch.data() + i * n, sizeof(float) * n) == 0);
      }
    }
  }
}

// bf16_dot must round x to bf16 on every ISA (not be ignored): the result
// follows the rounded reference closely, differs from the exact one, and
// stays within bf16's rounding of x of it (|x - bf16(x)| <= 2^-9 |x|).
TEST_CASE("Gemm bf16 dot products round x to bf16 on every ISA", "[gemm]") {
  const int64_t m = 6, n = 37, k = 301;
  const std::vector<float> x = RandomVector(static_cast<size_t>(m * k), 11);
  const Weights w = MakeWeights(static_cast<size_t>(n * k), 12, DType::kBF16);
  GemmParams p{.x = x.data(), .ldx = k, .w = w.data(DType::kBF16), .w_dtype = DType::kBF16,
               .ldw = k, .ldy = n, .m = m, .n = n, .k = k, .bf16_dot = true};
  std::vector<float> exact(static_cast<size_t>(m * n)), rounded(exact.size());
  GemmParams r = p;
  r.y = rounded.data();
  reference::Gemm(r);
  r.y = exact.data();
  r.bf16_dot = false;
  reference::Gemm(r);
  // sum_k |x w| per output: the bound on the rounding error.
  std::vector<float> bound(exact.size());
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t kk = 0; kk < k; ++kk) {
        s += std::fabs(x[i * k + kk] * Bf16ToF32(w.h16[j * k + kk]));
      }
      bound[i * n + j] = static_cast<float>(s * 0x1p-9);
    }
  }
  for (Isa isa : SupportedIsas()) {
    if (!Bf16DotUsed(isa, DType::kBF16, true)) continue;
    INFO("isa=" << IsaName(isa));
    std::vector<float> y(exact.size());
    p.y = y.data();
    REQUIRE(Gemm(p, nullptr, isa).ok());
    const float tol = Tolerance(isa, true, k);
    CHECK(CompareClose(y.data(), rounded.data(), y.size(), tol, 1e-4f) == "");
    CHECK(CompareClose(y.data(), exact.data(), y.size(), 1e-6f) != "");
    for (size_t i = 0; i < y.size(); ++i) {
      INFO("output " << i);
      REQUIRE(std::fabs(y[i] - exact[i]) <= bound[i] + tol);
    }
  }
}

TEST_CASE("Gemm rejects bad arguments", "[gemm]") {
  std::vector<float> x(16), w(16), y(16);
  GemmParams p;
  p.x = x.data();
  p.w = w.data();
  p.y = y.data();
  p.m = 2;
  p.n = 2;
  p.k = 4;
  p.ldx = 4;
  p.ldw = 4;
  p.ldy = 2;
  CHECK(Gemm(p, nullptr).ok());
  GemmParams bad = p;
  bad.ldx = 3;
  CHECK(absl::IsInvalidArgument(Gemm(bad, nullptr)));
  bad = p;
  bad.m = -1;
  CHECK(absl::IsInvalidArgument(Gemm(bad, nullptr)));
  bad = p;
  bad.w = nullptr;
  CHECK(absl::IsInvalidArgument(Gemm(bad, nullptr)));
  bad = p;
  bad.w_dtype = DType::kI64;
  CHECK(absl::IsInvalidArgument(Gemm(bad, nullptr)));
  if (!IsaSupported(Isa::kAvx512)) CHECK(absl::IsInvalidArgument(Gemm(p, nullptr, Isa::kAvx512)));
  // k == 0: y = bias (or y += bias).
  std::vector<float> bias = {1.5f, -2.0f};
  GemmParams zero = p;
  zero.k = 0;
  zero.bias = bias.data();
  REQUIRE(Gemm(zero, nullptr).ok());
  CHECK(y[0] == 1.5f);
  CHECK(y[3] == -2.0f);
  zero.accumulate = true;
  REQUIRE(Gemm(zero, nullptr).ok());
  CHECK(y[0] == 3.0f);
}

}  // namespace
}  // namespace kestrel::kernels::cpu
