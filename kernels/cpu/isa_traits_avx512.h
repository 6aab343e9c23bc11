// AVX-512 vector traits for the ISA kernel templates (isa_*_impl.h): 16-lane
// F32 vectors, __mmask16 tails, vdpbf16ps bf16 dot products. Included only
// by isa_avx512.cc, compiled with -mavx512f/bw/vl/dq/bf16 (BUILD.bazel);
// everything here has internal linkage (see isa_traits_scalar.h for the list
// of what a traits type provides).
#ifndef KESTREL_KERNELS_CPU_ISA_TRAITS_AVX512_H_
#define KESTREL_KERNELS_CPU_ISA_TRAITS_AVX512_H_

#include <immintrin.h>

#include <cstdint>

namespace kestrel::kernels::cpu::isa {
namespace {

struct Avx512 {
  static constexpr int kLanes = 16;
  using Vec = __m512;
  using Mask = __mmask16;      // which of a Vec's lanes a tail load/store touches
  using Bf16Pairs = __m512i;   // 2 * kLanes bf16 values, pair i in 32-bit lane i

  // GEMM register tiles (accumulators <= 24 of the 32 registers): M x 1 when
  // M <= 3 (decode reads one weight row at a time, see isa_gemm_impl.h), else
  // 4 x 6 over 48-column blocks of W held in L2.
  static constexpr int kMaxSmallM = 3;
  static constexpr int kSmallNR = 1;
  static constexpr int kBigMR = 4;
  static constexpr int kBigNR = 6;
  // The exact BF16 GEMM path reads x split into even/odd halves (GemmArgs::xd).
  static constexpr bool kSplitBf16 = true;
  // AccumulateV keeps up to this many vectors of the output row in registers
  // (head dims 16..128).
  static constexpr int kMaxVChunks = 8;
  // exp by the shared Cephes polynomial (isa_exp_impl.h).
  static constexpr bool kPolyExp = true;

  static Vec Zero() { return _mm512_setzero_ps(); }
  static Vec Set1(float x) { return _mm512_set1_ps(x); }
  static Vec Load(const float* p) { return _mm512_loadu_ps(p); }
  static void Store(float* p, Vec v) { _mm512_storeu_ps(p, v); }
  // The first n lanes. REQUIRES: 0 <= n <= kLanes.
  static Mask TailMask(int64_t n) { return static_cast<Mask>((1u << n) - 1); }
  // Masked-off lanes read as zero and are not accessed.
  static Vec LoadMasked(const float* p, Mask m) { return _mm512_maskz_loadu_ps(m, p); }
  static void StoreMasked(float* p, Mask m, Vec v) { _mm512_mask_storeu_ps(p, m, v); }
  // kLanes 16-bit values widened to F32 (exact).
  static Vec WidenBf16(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  static Vec LoadBf16(const uint16_t* p) {
    return WidenBf16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static Vec LoadBf16Masked(const uint16_t* p, Mask m) {
    return WidenBf16(_mm256_maskz_loadu_epi16(m, p));
  }
  static Vec LoadF16(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static Vec LoadF16Masked(const uint16_t* p, Mask m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
  }

  static Vec Add(Vec a, Vec b) { return _mm512_add_ps(a, b); }
  static Vec Sub(Vec a, Vec b) { return _mm512_sub_ps(a, b); }
  static Vec Mul(Vec a, Vec b) { return _mm512_mul_ps(a, b); }
  static Vec Div(Vec a, Vec b) { return _mm512_div_ps(a, b); }
  static Vec Min(Vec a, Vec b) { return _mm512_min_ps(a, b); }
  static Vec Max(Vec a, Vec b) { return _mm512_max_ps(a, b); }
  static Vec Fmadd(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }    // a*b + c
  static Vec Fnmadd(Vec a, Vec b, Vec c) { return _mm512_fnmadd_ps(a, b, c); }  // c - a*b
  static Vec Round(Vec x) {
    return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  // p * 2^n for integral n.
  static Vec Scale2(Vec p, Vec n) { return _mm512_scalef_ps(p, n); }

  static float First(Vec v) { return _mm512_cvtss_f32(v); }
  static float ReduceAdd(Vec v) { return _mm512_reduce_add_ps(v); }
  static float ReduceAddMasked(Vec v, Mask m) { return _mm512_mask_reduce_add_ps(m, v); }
  // -inf when no lane is selected.
  static float ReduceMaxMasked(Vec v, Mask m) { return _mm512_mask_reduce_max_ps(m, v); }

  // bf16 pairs: 2 * kLanes weights or activations; the low halves of the
  // 32-bit lanes are the even elements, the high halves the odd ones.
  static Bf16Pairs LoadPairs(const uint16_t* p) { return _mm512_loadu_si512(p); }
  // The first n elements, the rest zero. REQUIRES: 0 <= n <= 2 * kLanes.
  using PairsMask = __mmask32;
  static PairsMask PairsTailMask(int64_t n) {
    return static_cast<PairsMask>((uint64_t{1} << n) - 1);
  }
  static Bf16Pairs LoadPairsMasked(const uint16_t* p, PairsMask m) {
    return _mm512_maskz_loadu_epi16(m, p);
  }
  static Vec Even(Bf16Pairs v) { return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)); }
  static Vec Odd(Bf16Pairs v) {
    return _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
  }
  // acc + the dot product of each lane's pair: one vdpbf16ps.
  static Vec DotBf16(Vec acc, Bf16Pairs x, Bf16Pairs w) {
    return _mm512_dpbf16_ps(acc, (__m512bh)x, (__m512bh)w);
  }
  // kLanes values rounded to bf16 (nearest even) into out[0, kLanes).
  static void StoreBf16(uint16_t* out, Vec v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), (__m256i)_mm512_cvtneps_pbh(v));
  }
  // 16-bit lane 2i takes element i of v's low half, lane 2i + 1 element i
  // of its high half.
  static Bf16Pairs ZipHalves(__m512i v) {
    const __m512i index = _mm512_set_epi32(
        0x001f000f, 0x001e000e, 0x001d000d, 0x001c000c, 0x001b000b, 0x001a000a, 0x00190009,
        0x00180008, 0x00170007, 0x00160006, 0x00150005, 0x00140004, 0x00130003, 0x00120002,
        0x00110001, 0x00100000);
    return _mm512_permutexvar_epi16(index, v);
  }
  // Pair i = (a[i], b[i]): two runs of bf16 values zipped so that one
  // vdpbf16ps multiplies both. Only a[0, na) and b[0, nb) are read (the
  // rest is zero). REQUIRES: 0 <= na, nb <= kLanes.
  static Bf16Pairs ZipBf16(const uint16_t* a, int64_t na, const uint16_t* b, int64_t nb) {
    const __m256i lo = _mm256_maskz_loadu_epi16(TailMask(na), a);
    const __m256i hi = nb > 0 ? _mm256_maskz_loadu_epi16(TailMask(nb), b) : _mm256_setzero_si256();
    return ZipHalves(_mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1));
  }
  // ZipBf16 of two whole runs (na = nb = kLanes), unmasked; one load when
  // b follows a (rows of a 16-slot key tile).
  static Bf16Pairs ZipBf16Full(const uint16_t* a, const uint16_t* b) {
    if (b == a + kLanes) return ZipHalves(_mm512_loadu_si512(a));
    return ZipHalves(_mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a))),
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b)), 1));
  }
  // Two ZipBf16Full at once, of a[0, 2 kLanes) and b[0, 2 kLanes): *lo
  // pairs elements [0, kLanes), *hi elements [kLanes, 2 kLanes). Two loads
  // and two two-source permutes for two vectors of pairs.
  static void ZipBf16Full2(const uint16_t* a, const uint16_t* b, Bf16Pairs* lo, Bf16Pairs* hi) {
    const __m512i va = _mm512_loadu_si512(a), vb = _mm512_loadu_si512(b);
    // 16-bit lane 2i takes element i of a, lane 2i + 1 element i of b
    // (index 32 + i); hi the same 16 elements further.
    const __m512i index_lo = _mm512_set_epi32(
        0x002f000f, 0x002e000e, 0x002d000d, 0x002c000c, 0x002b000b, 0x002a000a, 0x00290009,
        0x00280008, 0x00270007, 0x00260006, 0x00250005, 0x00240004, 0x00230003, 0x00220002,
        0x00210001, 0x00200000);
    const __m512i index_hi = _mm512_add_epi16(index_lo, _mm512_set1_epi16(16));
    *lo = _mm512_permutex2var_epi16(va, index_lo, vb);
    *hi = _mm512_permutex2var_epi16(va, index_hi, vb);
  }
  // The same pair (two bf16 values as one 32-bit word) in every lane.
  static Bf16Pairs SplatPair(uint32_t pair) { return _mm512_set1_epi32(static_cast<int>(pair)); }

  // Int8 dot products (AVX512_VNNI vpdpbusd, u8 x s8 -> s32 in groups of 4).
  // The weights are s8; vpdpbusd wants one unsigned operand, so each weight
  // vector is flipped to w + 128 (one XOR, shared by every row of a tile)
  // and the kernel subtracts kI8WeightBias * sum(xq) per output, a per-row
  // constant of the activations: nothing about the weights needs
  // precomputing, so a column slice of a matrix is still a valid int8
  // matrix. |(w + 128) * x| <= 255 * 127 per product: exact in s32 for
  // k <= 65536.
  using I8Vec = __m512i;  // kI8Step int8 values
  using I32Acc = __m512i;
  static constexpr int kI8Step = 64;
  static constexpr int32_t kI8WeightBias = 128;
  static I8Vec LoadI8(const int8_t* p) { return _mm512_loadu_si512(p); }
  // The first n (0 < n < kI8Step) bytes, the rest zero.
  static I8Vec LoadI8Tail(const int8_t* p, int64_t n) {
    return _mm512_maskz_loadu_epi8((uint64_t{1} << n) - 1, p);
  }
  static I8Vec PrepareI8W(I8Vec w) { return _mm512_xor_si512(w, _mm512_set1_epi8(-128)); }
  static I32Acc ZeroI32() { return _mm512_setzero_si512(); }
  // acc + the sums of 4 products (x the activations, w from PrepareI8W).
  static I32Acc DotI8(I32Acc acc, I8Vec x, I8Vec w) { return _mm512_dpbusd_epi32(acc, w, x); }
  static int32_t ReduceAddI32(I32Acc v) { return _mm512_reduce_add_epi32(v); }
  // kLanes values rounded half to even (cvtps2dq under the default MXCSR)
  // into out[0, kLanes) as int8. REQUIRES: |v| <= 127.5.
  static void StoreI8(int8_t* out, Vec v) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(v)));
  }
  static Vec Abs(Vec v) { return _mm512_abs_ps(v); }
};

}  // namespace
}  // namespace kestrel::kernels::cpu::isa

#endif  // KESTREL_KERNELS_CPU_ISA_TRAITS_AVX512_H_
