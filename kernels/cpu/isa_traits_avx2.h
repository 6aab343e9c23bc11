// AVX2 + FMA + F16C vector traits for the ISA kernel templates
// (isa_*_impl.h): 8-lane F32 vectors; AVX2 has no 16-bit masked loads and
// no bf16 instructions, so 16-bit tails go through a zeroed copy and the
// bf16 dot product is emulated (both bf16 operands widened exactly, two F32
// FMAs). Included only by isa_avx2.cc, compiled with -mavx2 -mfma -mf16c;
// everything here has internal linkage (see isa_traits_scalar.h for the list
// of what a traits type provides).
#ifndef KESTREL_KERNELS_CPU_ISA_TRAITS_AVX2_H_
#define KESTREL_KERNELS_CPU_ISA_TRAITS_AVX2_H_

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

namespace kestrel::kernels::cpu::isa {
namespace {

struct Avx2 {
  static constexpr int kLanes = 8;
  using Vec = __m256;
  // Number of leading lanes a tail load/store touches.
  using Mask = int64_t;
  using Bf16Pairs = __m256i;  // 2 * kLanes bf16 values, pair i in 32-bit lane i

  // 16 ymm registers: M x 4 tiles (<= 12 accumulators) when M <= 3, else
  // 4 x 3.
  static constexpr int kMaxSmallM = 3;
  static constexpr int kSmallNR = 4;
  static constexpr int kBigMR = 4;
  static constexpr int kBigNR = 3;
  static constexpr bool kSplitBf16 = true;
  static constexpr int kMaxVChunks = 8;  // head dims 8..64 in registers
  static constexpr bool kPolyExp = true;

  static Vec Zero() { return _mm256_setzero_ps(); }
  static Vec Set1(float x) { return _mm256_set1_ps(x); }
  static Vec Load(const float* p) { return _mm256_loadu_ps(p); }
  static void Store(float* p, Vec v) { _mm256_storeu_ps(p, v); }
  static Mask TailMask(int64_t n) { return n; }
  static __m256i LaneMask(Mask n) {
    return _mm256_cmpgt_epi32(
        _mm256_set1_epi32(static_cast<int>(n < 0 ? 0 : n > kLanes ? kLanes : n)),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static Vec LoadMasked(const float* p, Mask m) { return _mm256_maskload_ps(p, LaneMask(m)); }
  static void StoreMasked(float* p, Mask m, Vec v) { _mm256_maskstore_ps(p, LaneMask(m), v); }
  static __m128i Load16(const uint16_t* p) {
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  }
  static __m128i Load16Masked(const uint16_t* p, Mask n) {
    if (n >= kLanes) return Load16(p);
    alignas(16) uint16_t tmp[kLanes] = {};
    for (int64_t j = 0; j < n; ++j) tmp[j] = p[j];
    return _mm_load_si128(reinterpret_cast<const __m128i*>(tmp));
  }
  static Vec WidenBf16(__m128i h) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static Vec LoadBf16(const uint16_t* p) { return WidenBf16(Load16(p)); }
  static Vec LoadBf16Masked(const uint16_t* p, Mask m) { return WidenBf16(Load16Masked(p, m)); }
  static Vec LoadF16(const uint16_t* p) { return _mm256_cvtph_ps(Load16(p)); }
  static Vec LoadF16Masked(const uint16_t* p, Mask m) { return _mm256_cvtph_ps(Load16Masked(p, m)); }

  static Vec Add(Vec a, Vec b) { return _mm256_add_ps(a, b); }
  static Vec Sub(Vec a, Vec b) { return _mm256_sub_ps(a, b); }
  static Vec Mul(Vec a, Vec b) { return _mm256_mul_ps(a, b); }
  static Vec Div(Vec a, Vec b) { return _mm256_div_ps(a, b); }
  static Vec Min(Vec a, Vec b) { return _mm256_min_ps(a, b); }
  static Vec Max(Vec a, Vec b) { return _mm256_max_ps(a, b); }
  static Vec Fmadd(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
  static Vec Fnmadd(Vec a, Vec b, Vec c) { return _mm256_fnmadd_ps(a, b, c); }
  static Vec Round(Vec x) { return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  // p * 2^n, built in the exponent field: REQUIRES -126 <= n <= 127 (the
  // exp clamp to [-87, 88] guarantees it).
  static Vec Scale2(Vec p, Vec n) {
    const __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
  }

  static float First(Vec v) { return _mm256_cvtss_f32(v); }
  static float ReduceAdd(Vec v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static float ReduceAddMasked(Vec v, Mask m) {
    return ReduceAdd(_mm256_and_ps(v, _mm256_castsi256_ps(LaneMask(m))));
  }
  static float ReduceMaxMasked(Vec v, Mask m) {
    v = _mm256_blendv_ps(_mm256_set1_ps(-__builtin_inff()), v, _mm256_castsi256_ps(LaneMask(m)));
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }

  static Bf16Pairs LoadPairs(const uint16_t* p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  }
  using PairsMask = int64_t;  // number of leading elements
  static PairsMask PairsTailMask(int64_t n) { return n; }
  // The first n (<= 2 * kLanes) elements, the rest zero.
  static Bf16Pairs LoadPairsMasked(const uint16_t* p, PairsMask n) {
    uint16_t tmp[2 * kLanes] = {};
    __builtin_memcpy(tmp, p, static_cast<size_t>(n) * 2);
    return LoadPairs(tmp);
  }
  static Vec Even(Bf16Pairs v) { return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)); }
  static Vec Odd(Bf16Pairs v) {
    return _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
  }
  // vdpbf16ps emulated: the products of bf16 values are exact in F32, so
  // each pair costs two FMAs and no rounding beyond the accumulation.
  static Vec DotBf16(Vec acc, Bf16Pairs x, Bf16Pairs w) {
    acc = _mm256_fmadd_ps(Even(x), Even(w), acc);
    return _mm256_fmadd_ps(Odd(x), Odd(w), acc);
  }
  // Pair i = (a[i], b[i]) (see isa_traits_scalar.h); reads a[0, na), b[0, nb).
  static Bf16Pairs ZipBf16(const uint16_t* a, int64_t na, const uint16_t* b, int64_t nb) {
    const __m128i x = Load16Masked(a, na);
    const __m128i y = nb > 0 ? Load16Masked(b, nb) : _mm_setzero_si128();
    return _mm256_set_m128i(_mm_unpackhi_epi16(x, y), _mm_unpacklo_epi16(x, y));
  }
  static Bf16Pairs SplatPair(uint32_t pair) { return _mm256_set1_epi32(static_cast<int>(pair)); }
  // Round to nearest even, NaN stays NaN (kernels/dtype.h F32ToBf16).
  static void StoreBf16(uint16_t* out, Vec v) {
    const __m256i bits = _mm256_castps_si256(v);
    const __m256i one = _mm256_set1_epi32(1);
    const __m256i rounded = _mm256_srli_epi32(
        _mm256_add_epi32(_mm256_add_epi32(bits, _mm256_set1_epi32(0x7fff)),
                         _mm256_and_si256(_mm256_srli_epi32(bits, 16), one)),
        16);
    const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(0x40));
    const __m256i is_nan = _mm256_cmpgt_epi32(
        _mm256_and_si256(bits, _mm256_set1_epi32(0x7fffffff)), _mm256_set1_epi32(0x7f800000));
    const __m256i h = _mm256_blendv_epi8(rounded, quiet, is_nan);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out),
                     _mm_packus_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1)));
  }

  // Int8 dot products: vpmaddubsw (u8 x s8 -> pairs summed into s16,
  // saturating) then vpmaddwd by ones into s32. The unsigned operand is |w|
  // and w's sign moves onto x (vpsignb): x is in [-127, 127], so -x always
  // fits, while w may be -128 (compressed-tensors checkpoints hold it), whose
  // |w| = 128 is exact as u8. A pair sums to at most 2 * 128 * 127 = 32512
  // and never saturates.
  using I8Vec = __m256i;
  using I32Acc = __m256i;
  static constexpr int kI8Step = 32;
  static constexpr int32_t kI8WeightBias = 0;
  static I8Vec LoadI8(const int8_t* p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  }
  static I8Vec LoadI8Tail(const int8_t* p, int64_t n) {
    int8_t tmp[kI8Step] = {};
    __builtin_memcpy(tmp, p, static_cast<size_t>(n));
    return LoadI8(tmp);
  }
  static I8Vec PrepareI8W(I8Vec w) { return w; }
  static I32Acc ZeroI32() { return _mm256_setzero_si256(); }
  static I32Acc DotI8(I32Acc acc, I8Vec x, I8Vec w) {
    const __m256i pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
  }
  static int32_t ReduceAddI32(I32Acc v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
  }
  static void StoreI8(int8_t* out, Vec v) {
    const __m256i i = _mm256_cvtps_epi32(v);
    const __m128i h = _mm_packs_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(out), _mm_packs_epi16(h, h));
  }
  static Vec Abs(Vec v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }
};

}  // namespace
}  // namespace kestrel::kernels::cpu::isa

#endif  // KESTREL_KERNELS_CPU_ISA_TRAITS_AVX2_H_
