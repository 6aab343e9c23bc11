// AVX-512 variant of the ISA entry points (see isa_kernels.h), compiled with
// -mavx512f/bw/vl/dq/bf16 (BUILD.bazel) and only called after a CPUID check.
//
// GEMM layout: W stays [N, K] as in the checkpoint, so the vector lanes run
// along K: each output y[m, n] owns one 16-lane F32 accumulator, a register
// tile of MR rows x NR columns shares the x and W loads, and the lanes are
// summed at the end in a fixed order. Every output therefore sees the same
// instruction sequence whatever the tile, M or thread split is (batch
// invariance). BF16/F16 weights are widened to F32 in registers and use F32
// FMA (exact products); with bf16_dot, x is pre-rounded to bf16 and
// vdpbf16ps does two products per lane per instruction.
// GCC 12 reports its own _mm512_undefined_*() placeholders inside the
// intrinsic headers as uninitialized once they are inlined at -O2 (a known
// false positive); the values are never read.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/isa_kernels.h"

namespace kestrel::kernels::cpu::isa {
namespace {

constexpr int kWBF16Dot = 3;  // bf16 weights with bf16 activations

template <int T>
inline __m512 LoadW16(const void* w, int64_t off) {
  if constexpr (T == kWF32) {
    return _mm512_loadu_ps(static_cast<const float*>(w) + off);
  } else {
    const __m256i h =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + off));
    if constexpr (T == kWF16) {
      return _mm512_cvtph_ps(h);
    } else {
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
  }
}

template <int T>
inline __m512 LoadW16Tail(const void* w, int64_t off, __mmask16 mask) {
  if constexpr (T == kWF32) {
    return _mm512_maskz_loadu_ps(mask, static_cast<const float*>(w) + off);
  } else {
    const __m256i h = _mm256_maskz_loadu_epi16(mask, static_cast<const uint16_t*>(w) + off);
    if constexpr (T == kWF16) {
      return _mm512_cvtph_ps(h);
    } else {
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
  }
}

// Tile shapes (accumulators <= 24 of the 32 registers): M x 1 when M <= 3,
// else 4 x 6 over 48-column blocks of W held in L2. Decode (M <= 3) reads one
// weight row at a time: a thread's rows are contiguous, so its weights are a
// single sequential stream the hardware prefetcher follows across rows. Eight
// rows side by side (eight streams 4 KiB apart at K = 2048) ran the TinyLlama
// decode at 91-92 % of the interleaved bandwidth probe against 98 % for one
// row (model_bench, bf16 dot products), and one row's dependency chain still
// runs at ~59 GB/s per core from L2. (M x 3 tiles for 4 <= M <= 8, streaming
// W only once, were measured slower at M = 8.)
constexpr int kMaxSmallM = 3;
constexpr int kSmallNR = 1;
constexpr int kBigMR = 4;
constexpr int kBigNR = 6;

inline void Store(const GemmArgs& a, int64_t m, int64_t n, float dot) {
  if (a.bias != nullptr) dot += a.bias[n];
  float* y = a.y + m * a.ldy + n;
  *y = a.accumulate ? *y + dot : dot;
}

// y[m0 : m0+MR, n0 : n0+NR] for weights of type T.
template <int T, int MR, int NR>
void Tile(const GemmArgs& a, int64_t m0, int64_t n0) {
  __m512 acc[MR][NR];
  #pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
    #pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
  const int64_t k = a.k;
  if constexpr (T == kWBF16Dot) {
    const uint16_t* xr[MR];
    #pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) xr[i] = a.xb + (m0 + i) * a.ldxb;
    const uint16_t* wr[NR];
    #pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) wr[j] = static_cast<const uint16_t*>(a.w) + (n0 + j) * a.ldw;
    int64_t k0 = 0;
    for (; k0 + 32 <= k; k0 += 32) {
      __m512i xv[MR];
      #pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) xv[i] = _mm512_loadu_si512(xr[i] + k0);
      #pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) {
        const __m512i wv = _mm512_loadu_si512(wr[j] + k0);
        #pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) {
          acc[i][j] = _mm512_dpbf16_ps(acc[i][j], (__m512bh)xv[i], (__m512bh)wv);
        }
      }
    }
    if (k0 < k) {
      const __mmask32 mask = static_cast<__mmask32>((uint64_t{1} << (k - k0)) - 1);
      __m512i xv[MR];
      #pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) xv[i] = _mm512_loadu_si512(xr[i] + k0);  // zero padded
      #pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) {
        const __m512i wv = _mm512_maskz_loadu_epi16(mask, wr[j] + k0);
        #pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) {
          acc[i][j] = _mm512_dpbf16_ps(acc[i][j], (__m512bh)xv[i], (__m512bh)wv);
        }
      }
    }
  } else if constexpr (T == kWBF16) {
    // 32 bf16 weights per step: the low halves of the 16 dwords are the even
    // k, the high halves the odd k; x comes pre-split the same way (xd).
    const float* xr[MR];
    #pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) xr[i] = a.xd + (m0 + i) * a.ldxd;
    const uint16_t* wr[NR];
    #pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) wr[j] = static_cast<const uint16_t*>(a.w) + (n0 + j) * a.ldw;
    const __m512i hi_mask = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
    int64_t k0 = 0;
    for (; k0 < k; k0 += 32) {
      const bool tail = k - k0 < 32;
      const __mmask32 mask =
          tail ? static_cast<__mmask32>((uint64_t{1} << (k - k0)) - 1) : static_cast<__mmask32>(~0u);
      #pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) {
        const __m512i wv = tail ? _mm512_maskz_loadu_epi16(mask, wr[j] + k0)
                                : _mm512_loadu_si512(wr[j] + k0);
        const __m512 w_even = _mm512_castsi512_ps(_mm512_slli_epi32(wv, 16));
        const __m512 w_odd = _mm512_castsi512_ps(_mm512_and_si512(wv, hi_mask));
        #pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) {
          acc[i][j] = _mm512_fmadd_ps(_mm512_loadu_ps(xr[i] + k0), w_even, acc[i][j]);
          acc[i][j] = _mm512_fmadd_ps(_mm512_loadu_ps(xr[i] + k0 + 16), w_odd, acc[i][j]);
        }
      }
    }
  } else {
    const float* xr[MR];
    #pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) xr[i] = a.x + (m0 + i) * a.ldx;
    int64_t wr[NR];
    #pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) wr[j] = (n0 + j) * a.ldw;
    int64_t k0 = 0;
    for (; k0 + 16 <= k; k0 += 16) {
      __m512 xv[MR];
      #pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) xv[i] = _mm512_loadu_ps(xr[i] + k0);
      #pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) {
        const __m512 wv = LoadW16<T>(a.w, wr[j] + k0);
        #pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) acc[i][j] = _mm512_fmadd_ps(xv[i], wv, acc[i][j]);
      }
    }
    if (k0 < k) {
      const __mmask16 mask = static_cast<__mmask16>((1u << (k - k0)) - 1);
      __m512 xv[MR];
      #pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) xv[i] = _mm512_maskz_loadu_ps(mask, xr[i] + k0);
      #pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) {
        const __m512 wv = LoadW16Tail<T>(a.w, wr[j] + k0, mask);
        #pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) acc[i][j] = _mm512_fmadd_ps(xv[i], wv, acc[i][j]);
      }
    }
  }
  #pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
    #pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) Store(a, m0 + i, n0 + j, _mm512_reduce_add_ps(acc[i][j]));
}

using TileFn = void (*)(const GemmArgs&, int64_t, int64_t);

// Columns per cache block in the big-M loop: 48 rows of W (96 KiB of bf16 at
// K=1024) are reused from L2 by every row tile.
constexpr int64_t kBigNBlock = 48;

#define KESTREL_TILE_ROW(T, MR)                                                     \
  {&Tile<T, MR, 1>, &Tile<T, MR, 2>, &Tile<T, MR, 3>, &Tile<T, MR, 4>, &Tile<T, MR, 5>, \
   &Tile<T, MR, 6>}

template <int T>
void Range(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  static_assert(kSmallNR <= kBigNR);
  // Explicit instantiation list: MR in [1, kBigMR], NR in [1, kBigNR].
  static constexpr TileFn kTiles[kBigMR][kBigNR] = {KESTREL_TILE_ROW(T, 1), KESTREL_TILE_ROW(T, 2),
                                                    KESTREL_TILE_ROW(T, 3), KESTREL_TILE_ROW(T, 4)};
  if (a.m <= kMaxSmallM) {
    const TileFn* row = kTiles[a.m - 1];
    for (int64_t n0 = n_begin; n0 < n_end; n0 += kSmallNR) {
      const int64_t nr = n_end - n0 < kSmallNR ? n_end - n0 : kSmallNR;
      row[nr - 1](a, 0, n0);
    }
    return;
  }
  for (int64_t nb = n_begin; nb < n_end; nb += kBigNBlock) {
    const int64_t ne = n_end - nb < kBigNBlock ? n_end : nb + kBigNBlock;
    for (int64_t m0 = 0; m0 < a.m; m0 += kBigMR) {
      const int64_t mr = a.m - m0 < kBigMR ? a.m - m0 : kBigMR;
      const TileFn* row = kTiles[mr - 1];
      for (int64_t n0 = nb; n0 < ne; n0 += kBigNR) {
        const int64_t nr = ne - n0 < kBigNR ? ne - n0 : kBigNR;
        row[nr - 1](a, m0, n0);
      }
    }
  }
}

#undef KESTREL_TILE_ROW

// 16 K/V elements (masked) as F32: F32 as is, bf16 widened exactly.
inline __m512 LoadKv(__mmask16 mask, const float* p) { return _mm512_maskz_loadu_ps(mask, p); }
inline __m512 LoadKv(__mmask16 mask, const uint16_t* p) {
  return _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, p)), 16));
}

template <typename T>
void Scores(const float* q, const T* kt, int64_t kt_stride, int64_t count, int64_t d,
            float scale, float* s) {
  const __mmask16 mask = static_cast<__mmask16>((1u << count) - 1);
  // Four partial sums break the FMA latency chain.
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 4 <= d; i += 4) {
    const T* k = kt + i * kt_stride;
    a0 = _mm512_fmadd_ps(_mm512_set1_ps(q[i]), LoadKv(mask, k), a0);
    a1 = _mm512_fmadd_ps(_mm512_set1_ps(q[i + 1]), LoadKv(mask, k + kt_stride), a1);
    a2 = _mm512_fmadd_ps(_mm512_set1_ps(q[i + 2]), LoadKv(mask, k + 2 * kt_stride), a2);
    a3 = _mm512_fmadd_ps(_mm512_set1_ps(q[i + 3]), LoadKv(mask, k + 3 * kt_stride), a3);
  }
  for (; i < d; ++i) {
    a0 = _mm512_fmadd_ps(_mm512_set1_ps(q[i]), LoadKv(mask, kt + i * kt_stride), a0);
  }
  const __m512 sum = _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));
  _mm512_storeu_ps(s, _mm512_mul_ps(sum, _mm512_set1_ps(scale)));
}





// exp(x) (Cephes expf: range reduction by ln 2, degree-6 polynomial, 2^n by
// vscalefps); relative error ~2e-7. Inputs are clamped to [-87, 88]: tiny
// or huge results, never NaN or inf from the clamp itself.
inline __m512 Exp(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

float SoftmaxStep(float* s, int64_t count, float* m, float* l) {
  const __mmask16 mask = static_cast<__mmask16>((1u << count) - 1);
  const __m512 v = _mm512_maskz_loadu_ps(mask, s);
  const float block_max = _mm512_mask_reduce_max_ps(mask, v);
  const float m_new = block_max > *m ? block_max : *m;
  // exp(-inf) would clamp to exp(-87), not 0: the first step says 0 itself.
  const float alpha = m_new == *m                ? 1.0f
                      : *m == -__builtin_inff() ? 0.0f
                                                 : _mm512_cvtss_f32(Exp(_mm512_set1_ps(*m - m_new)));
  const __m512 e = Exp(_mm512_sub_ps(v, _mm512_set1_ps(m_new)));
  _mm512_mask_storeu_ps(s, mask, e);
  *l = *l * alpha + _mm512_mask_reduce_add_ps(mask, e);
  *m = m_new;
  return alpha;
}

// The accumulator row stays in C registers across all keys.
template <int C, typename T>
void AccumulateVChunks(float* acc, float alpha, const float* p, const T* v, int64_t v_stride,
                       int64_t count) {
  const __m512 va = _mm512_set1_ps(alpha);
  const __mmask16 all = static_cast<__mmask16>(0xffff);
  __m512 r[C];
  #pragma GCC unroll 16
  for (int c = 0; c < C; ++c) r[c] = _mm512_mul_ps(_mm512_loadu_ps(acc + 16 * c), va);
  for (int64_t j = 0; j < count; ++j) {
    const __m512 pj = _mm512_set1_ps(p[j]);
    const T* vr = v + j * v_stride;
    #pragma GCC unroll 16
    for (int c = 0; c < C; ++c) r[c] = _mm512_fmadd_ps(pj, LoadKv(all, vr + 16 * c), r[c]);
  }
  #pragma GCC unroll 16
  for (int c = 0; c < C; ++c) _mm512_storeu_ps(acc + 16 * c, r[c]);
}

template <typename T>
void AccumulateV(float* acc, float alpha, const float* p, const T* v, int64_t v_stride,
                 int64_t count, int64_t d) {
  // Explicit instantiations for head dims 64, 80, 96, 128 (and the other
  // multiples of 16 up to 128); anything else takes the masked loop.
  switch (d) {
    case 16: return AccumulateVChunks<1>(acc, alpha, p, v, v_stride, count);
    case 32: return AccumulateVChunks<2>(acc, alpha, p, v, v_stride, count);
    case 48: return AccumulateVChunks<3>(acc, alpha, p, v, v_stride, count);
    case 64: return AccumulateVChunks<4>(acc, alpha, p, v, v_stride, count);
    case 80: return AccumulateVChunks<5>(acc, alpha, p, v, v_stride, count);
    case 96: return AccumulateVChunks<6>(acc, alpha, p, v, v_stride, count);
    case 112: return AccumulateVChunks<7>(acc, alpha, p, v, v_stride, count);
    case 128: return AccumulateVChunks<8>(acc, alpha, p, v, v_stride, count);
    default: break;
  }
  const __m512 va = _mm512_set1_ps(alpha);
  for (int64_t i = 0; i < d; i += 16) {
    const __mmask16 mask =
        d - i >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << (d - i)) - 1);
    __m512 r = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, acc + i), va);
    for (int64_t j = 0; j < count; ++j) {
      r = _mm512_fmadd_ps(_mm512_set1_ps(p[j]), LoadKv(mask, v + j * v_stride + i), r);
    }
    _mm512_mask_storeu_ps(acc + i, mask, r);
  }
}

}  // namespace

void GemmRangeAvx512(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  if (a.bf16_dot) {
    Range<kWBF16Dot>(a, n_begin, n_end);
    return;
  }
  switch (a.w_type) {
    case kWF32: Range<kWF32>(a, n_begin, n_end); return;
    case kWF16: Range<kWF16>(a, n_begin, n_end); return;
    case kWBF16: Range<kWBF16>(a, n_begin, n_end); return;
    default: __builtin_trap();  // gemm.cc validated the dtype
  }
}

void ConvertToBf16Avx512Bf16(const float* x, int64_t ldx, int64_t m, int64_t k, uint16_t* out,
                             int64_t kpad) {
  for (int64_t i = 0; i < m; ++i) {
    const float* xr = x + i * ldx;
    uint16_t* o = out + i * kpad;
    for (int64_t k0 = 0; k0 < kpad; k0 += 16) {
      const int64_t left = k - k0;
      const __mmask16 mask = left >= 16  ? static_cast<__mmask16>(0xffff)
                             : left <= 0 ? static_cast<__mmask16>(0)
                                         : static_cast<__mmask16>((1u << left) - 1);
      const __m256bh h = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask, xr + k0));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + k0), (__m256i)h);
    }
  }
}

float SumF32Avx512(const float* x, int64_t n) {
  // kSumStreams equal parts read side by side, one accumulator each.
  const int64_t part = n / kSumStreams / 16 * 16;
  __m512 acc[kSumStreams];
  for (int s = 0; s < kSumStreams; ++s) acc[s] = _mm512_setzero_ps();
  for (int64_t i = 0; i < part; i += 16) {
    for (int s = 0; s < kSumStreams; ++s) {
      acc[s] = _mm512_add_ps(acc[s], _mm512_loadu_ps(x + s * part + i));
    }
  }
  for (int64_t i = kSumStreams * part; i < n; i += 16) {
    const __mmask16 mask =
        n - i >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << (n - i)) - 1);
    acc[0] = _mm512_add_ps(acc[0], _mm512_maskz_loadu_ps(mask, x + i));
  }
  for (int s = 1; s < kSumStreams; ++s) acc[0] = _mm512_add_ps(acc[0], acc[s]);
  return _mm512_reduce_add_ps(acc[0]);
}

void SiluMulAvx512(const float* gate, const float* up, float* out, int64_t n) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 mask =
        n - i >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512 g = _mm512_maskz_loadu_ps(mask, gate + i);
    const __m512 u = _mm512_maskz_loadu_ps(mask, up + i);
    const __m512 e = Exp(_mm512_sub_ps(_mm512_setzero_ps(), g));
    _mm512_mask_storeu_ps(out + i, mask, _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(one, e)), u));
  }
}

const AttentionVecOps kAttentionAvx512 = {&Scores<float>, &Scores<uint16_t>, &SoftmaxStep,
                                          &AccumulateV<float>, &AccumulateV<uint16_t>};

}  // namespace kestrel::kernels::cpu::isa
