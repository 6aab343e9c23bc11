// Portable scalar "vector" traits (one lane) for the ISA kernel templates
// (isa_*_impl.h): the fallback for CPUs without AVX2. Included only by
// isa_scalar.cc; everything here has internal linkage.
//
// What a traits type provides (this file is the plainest instance; a new
// ISA, e.g. NEON, is one more traits file like this plus one translation
// unit like isa_scalar.cc):
//   kLanes              F32 lanes per Vec
//   Vec, Mask           vector; which leading lanes a tail load/store touches
//   Bf16Pairs           2 * kLanes bf16 values, pair i in 32-bit lane i
//   PairsMask           which leading elements of a Bf16Pairs a tail load reads
//   kMaxSmallM, kSmallNR, kBigMR, kBigNR
//                       GEMM register tiles: M x kSmallNR for M <= kMaxSmallM,
//                       else kBigMR x kBigNR (isa_gemm_impl.h)
//   kSplitBf16          the exact BF16 GEMM path reads GemmArgs::xd (x split
//                       into even/odd halves per 2 * kLanes) instead of
//                       widening each weight on its own
//   kMaxVChunks         AccumulateV keeps d = C * kLanes, C <= this, in registers
//   kPolyExp            exp by the shared polynomial (isa_exp_impl.h), else
//                       the traits' own ExpNative
//   Zero Set1 Load Store LoadMasked StoreMasked
//   TailMask(n)         the first n lanes, 0 <= n <= kLanes
//   LoadBf16 LoadBf16Masked LoadF16 LoadF16Masked   (kLanes 16-bit -> F32)
//   Add Sub Mul Div Min Max Fmadd(a*b+c) Fnmadd(c-a*b) Round Scale2(p*2^n)
//   First ReduceAdd ReduceAddMasked ReduceMaxMasked
//   LoadPairs PairsTailMask LoadPairsMasked Even Odd DotBf16 StoreBf16
//   ZipBf16(a, na, b, nb)  pair i = (a[i], b[i]), reading only a[0, na) and
//                       b[0, nb) (zeros past them); SplatPair(w): the 32-bit
//                       pair w in every lane (bf16 dot-product attention)
//   I8Vec I32Acc kI8Step kI8WeightBias
//                       int8 dot products: kI8Step int8 values per I8Vec,
//                       int32 accumulators; the kernel subtracts
//                       kI8WeightBias * sum(xq) (see the AVX-512 traits)
//   LoadI8 LoadI8Tail PrepareI8W ZeroI32 DotI8 ReduceAddI32 StoreI8 Abs
#ifndef KESTREL_KERNELS_CPU_ISA_TRAITS_SCALAR_H_
#define KESTREL_KERNELS_CPU_ISA_TRAITS_SCALAR_H_

#include <cmath>
#include <cstdint>
#include <cstring>

namespace kestrel::kernels::cpu::isa {
namespace {

struct Scalar {
  static constexpr int kLanes = 1;
  using Vec = float;
  using Mask = bool;
  using Bf16Pairs = uint32_t;

  // Any tile computes each output the same way; 1 x 1 keeps the code small.
  static constexpr int kMaxSmallM = 1;
  static constexpr int kSmallNR = 1;
  static constexpr int kBigMR = 1;
  static constexpr int kBigNR = 1;
  static constexpr bool kSplitBf16 = false;
  static constexpr int kMaxVChunks = 0;
  static constexpr bool kPolyExp = false;  // std::exp

  static Vec Zero() { return 0.0f; }
  static Vec Set1(float x) { return x; }
  static Vec Load(const float* p) { return *p; }
  static void Store(float* p, Vec v) { *p = v; }
  static Mask TailMask(int64_t n) { return n > 0; }
  static Vec LoadMasked(const float* p, Mask m) { return m ? *p : 0.0f; }
  static void StoreMasked(float* p, Mask m, Vec v) {
    if (m) *p = v;
  }
  static float Bf16(uint16_t h) {
    const uint32_t bits = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
  }
  static Vec LoadBf16(const uint16_t* p) { return Bf16(*p); }
  static Vec LoadBf16Masked(const uint16_t* p, Mask m) { return m ? Bf16(*p) : 0.0f; }
  static Vec LoadF16(const uint16_t* p) {
    _Float16 v;
    std::memcpy(&v, p, sizeof v);
    return static_cast<float>(v);
  }
  static Vec LoadF16Masked(const uint16_t* p, Mask m) { return m ? LoadF16(p) : 0.0f; }

  static Vec Add(Vec a, Vec b) { return a + b; }
  static Vec Sub(Vec a, Vec b) { return a - b; }
  static Vec Mul(Vec a, Vec b) { return a * b; }
  static Vec Div(Vec a, Vec b) { return a / b; }
  static Vec Min(Vec a, Vec b) { return b < a ? b : a; }
  static Vec Max(Vec a, Vec b) { return b > a ? b : a; }
  // Not fused (no FMA in the baseline ISA): the scalar GEMM's `acc += x * w`.
  static Vec Fmadd(Vec a, Vec b, Vec c) { return c + a * b; }
  static Vec Fnmadd(Vec a, Vec b, Vec c) { return c - a * b; }
  static Vec ExpNative(Vec x) { return std::exp(x); }
  static Vec Round(Vec x) { return std::nearbyint(x); }  // half to even

  static float First(Vec v) { return v; }
  static float ReduceAdd(Vec v) { return v; }
  static float ReduceAddMasked(Vec v, Mask m) { return m ? v : 0.0f; }
  static float ReduceMaxMasked(Vec v, Mask m) { return m ? v : -__builtin_inff(); }

  static Bf16Pairs LoadPairs(const uint16_t* p) {
    uint32_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  using PairsMask = int64_t;  // number of leading elements (0, 1 or 2)
  static PairsMask PairsTailMask(int64_t n) { return n; }
  static Bf16Pairs LoadPairsMasked(const uint16_t* p, PairsMask n) {
    return n >= 2 ? LoadPairs(p) : n == 1 ? static_cast<uint32_t>(*p) : 0u;
  }
  static Vec Even(Bf16Pairs v) { return Bf16(static_cast<uint16_t>(v)); }
  static Vec Odd(Bf16Pairs v) { return Bf16(static_cast<uint16_t>(v >> 16)); }
  static Vec DotBf16(Vec acc, Bf16Pairs x, Bf16Pairs w) {
    acc += Even(x) * Even(w);
    return acc + Odd(x) * Odd(w);
  }
  static Bf16Pairs ZipBf16(const uint16_t* a, int64_t na, const uint16_t* b, int64_t nb) {
    const uint32_t lo = na > 0 ? a[0] : 0u, hi = nb > 0 ? b[0] : 0u;
    return lo | hi << 16;
  }
  static Bf16Pairs SplatPair(uint32_t pair) { return pair; }
  // Round to nearest even, NaN stays NaN (kernels/dtype.h F32ToBf16).
  static void StoreBf16(uint16_t* out, Vec v) {
    uint32_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    if ((bits & 0x7fffffffu) > 0x7f800000u) {
      *out = static_cast<uint16_t>((bits >> 16) | 0x40);
      return;
    }
    bits += 0x7fffu + ((bits >> 16) & 1u);
    *out = static_cast<uint16_t>(bits >> 16);
  }

  // Int8 dot products, one element per step (exact int32 math).
  using I8Vec = int32_t;
  using I32Acc = int32_t;
  static constexpr int kI8Step = 1;
  static constexpr int32_t kI8WeightBias = 0;
  static I8Vec LoadI8(const int8_t* p) { return *p; }
  static I8Vec LoadI8Tail(const int8_t* p, int64_t n) { return n > 0 ? *p : 0; }
  static I8Vec PrepareI8W(I8Vec w) { return w; }
  static I32Acc ZeroI32() { return 0; }
  static I32Acc DotI8(I32Acc acc, I8Vec x, I8Vec w) { return acc + x * w; }
  static int32_t ReduceAddI32(I32Acc v) { return v; }
  // Round half to even, as cvtps2dq does under the default MXCSR.
  static void StoreI8(int8_t* out, Vec v) { *out = static_cast<int8_t>(std::nearbyint(v)); }
  static Vec Abs(Vec v) { return std::fabs(v); }
};

}  // namespace
}  // namespace kestrel::kernels::cpu::isa

#endif  // KESTREL_KERNELS_CPU_ISA_TRAITS_SCALAR_H_
