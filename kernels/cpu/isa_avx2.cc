// AVX2 + FMA + F16C variant of the ISA entry points (see isa_kernels.h and
// the layout notes in isa_avx512.cc, which this mirrors with 8-lane vectors),
// compiled with -mavx2 -mfma -mf16c and only called after a CPUID check.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/isa_kernels.h"

namespace kestrel::kernels::cpu::isa {
namespace {

template <int T>
inline __m256 LoadW8(const void* w, int64_t off) {
  if constexpr (T == kWF32) {
    return _mm256_loadu_ps(static_cast<const float*>(w) + off);
  } else {
    const __m128i h =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + off));
    if constexpr (T == kWF16) {
      return _mm256_cvtph_ps(h);
    } else {
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
  }
}

// The last k - off (< 8) elements, zero filled.
template <int T>
inline __m256 LoadW8Tail(const void* w, int64_t off, int64_t left) {
  if constexpr (T == kWF32) {
    float tmp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    __builtin_memcpy(tmp, static_cast<const float*>(w) + off, static_cast<size_t>(left) * 4);
    return _mm256_loadu_ps(tmp);
  } else {
    uint16_t tmp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    __builtin_memcpy(tmp, static_cast<const uint16_t*>(w) + off, static_cast<size_t>(left) * 2);
    return LoadW8<T>(tmp, 0);
  }
}

inline __m256 LoadX8Tail(const float* x, int64_t left) {
  float tmp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  __builtin_memcpy(tmp, x, static_cast<size_t>(left) * 4);
  return _mm256_loadu_ps(tmp);
}

inline float ReduceAdd(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline void Store(const GemmArgs& a, int64_t m, int64_t n, float dot) {
  if (a.bias != nullptr) dot += a.bias[n];
  float* y = a.y + m * a.ldy + n;
  *y = a.accumulate ? *y + dot : dot;
}

template <int T, int MR, int NR>
void Tile(const GemmArgs& a, int64_t m0, int64_t n0) {
  __m256 acc[MR][NR];
  #pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
    #pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_ps();
  const int64_t k = a.k;
  if constexpr (T == kWBF16) {
    // 16 bf16 weights per step: low dword halves are the even k, high halves
    // the odd k; x comes pre-split the same way (xd).
    const float* xdr[MR];
    #pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) xdr[i] = a.xd + (m0 + i) * a.ldxd;
    const uint16_t* wr[NR];
    #pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) wr[j] = static_cast<const uint16_t*>(a.w) + (n0 + j) * a.ldw;
    const __m256i hi_mask = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
    for (int64_t k0 = 0; k0 < k; k0 += 16) {
      const int64_t left = k - k0;
      #pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) {
        __m256i wv;
        if (left >= 16) {
          wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr[j] + k0));
        } else {
          uint16_t tmp[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
          __builtin_memcpy(tmp, wr[j] + k0, static_cast<size_t>(left) * 2);
          wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tmp));
        }
        const __m256 w_even = _mm256_castsi256_ps(_mm256_slli_epi32(wv, 16));
        const __m256 w_odd = _mm256_castsi256_ps(_mm256_and_si256(wv, hi_mask));
        #pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) {
          acc[i][j] = _mm256_fmadd_ps(_mm256_loadu_ps(xdr[i] + k0), w_even, acc[i][j]);
          acc[i][j] = _mm256_fmadd_ps(_mm256_loadu_ps(xdr[i] + k0 + 8), w_odd, acc[i][j]);
        }
      }
    }
    #pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
      #pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) Store(a, m0 + i, n0 + j, ReduceAdd(acc[i][j]));
    return;
  }
  const float* xr[MR];
  #pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) xr[i] = a.x + (m0 + i) * a.ldx;
  int64_t wr[NR];
  #pragma GCC unroll 8
  for (int j = 0; j < NR; ++j) wr[j] = (n0 + j) * a.ldw;
  int64_t k0 = 0;
  for (; k0 + 8 <= k; k0 += 8) {
    __m256 xv[MR];
    #pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) xv[i] = _mm256_loadu_ps(xr[i] + k0);
    #pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) {
      const __m256 wv = LoadW8<T>(a.w, wr[j] + k0);
      #pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) acc[i][j] = _mm256_fmadd_ps(xv[i], wv, acc[i][j]);
    }
  }
  if (k0 < k) {
    __m256 xv[MR];
    #pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) xv[i] = LoadX8Tail(xr[i] + k0, k - k0);
    #pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) {
      const __m256 wv = LoadW8Tail<T>(a.w, wr[j] + k0, k - k0);
      #pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) acc[i][j] = _mm256_fmadd_ps(xv[i], wv, acc[i][j]);
    }
  }
  #pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
    #pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) Store(a, m0 + i, n0 + j, ReduceAdd(acc[i][j]));
}

using TileFn = void (*)(const GemmArgs&, int64_t, int64_t);

// 16 ymm registers: up to 3 x 4 tiles (12 accumulators) with M < 4, 4 x 3
// otherwise.
constexpr int kMaxSmallM = 3;
constexpr int kSmallNR = 4;
constexpr int kBigMR = 4;
constexpr int kBigNR = 3;
constexpr int64_t kBigNBlock = 48;

#define KESTREL_TILE_ROW(T, MR) {&Tile<T, MR, 1>, &Tile<T, MR, 2>, &Tile<T, MR, 3>, &Tile<T, MR, 4>}

template <int T>
void Range(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  // Explicit instantiation list: MR in [1, 4], NR in [1, 4].
  static constexpr TileFn kTiles[4][4] = {KESTREL_TILE_ROW(T, 1), KESTREL_TILE_ROW(T, 2),
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

// 8 K/V elements as F32, lanes from n on zero (n may be <= 0): F32 by
// masked load, bf16 widened exactly (AVX2 has no 16-bit masked load, so a
// partial run goes through a zeroed copy).
inline __m256 LoadKv8(const float* p, __m256i mask, int64_t) { return _mm256_maskload_ps(p, mask); }
inline __m256 LoadKv8(const uint16_t* p, __m256i, int64_t n) {
  __m128i h;
  if (n >= 8) {
    h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  } else {
    alignas(16) uint16_t tmp[8] = {};
    for (int64_t j = 0; j < n; ++j) tmp[j] = p[j];
    h = _mm_load_si128(reinterpret_cast<const __m128i*>(tmp));
  }
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline __m256 LoadKv8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 LoadKv8(const uint16_t* p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(
      _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}
inline float KvValue(float x) { return x; }
inline float KvValue(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  __builtin_memcpy(&f, &bits, sizeof f);
  return f;
}

template <typename T>
void Scores(const float* q, const T* kt, int64_t kt_stride, int64_t count, int64_t d,
            float scale, float* s) {
  // Two 8-key halves (masked to count), two partial sums each.
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i m_lo = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), idx);
  const __m256i m_hi = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count) - 8), idx);
  const int64_t n_hi = count - 8;
  __m256 lo0 = _mm256_setzero_ps(), lo1 = lo0, hi0 = lo0, hi1 = lo0;
  int64_t i = 0;
  for (; i + 2 <= d; i += 2) {
    const __m256 q0 = _mm256_set1_ps(q[i]), q1 = _mm256_set1_ps(q[i + 1]);
    const T* k0 = kt + i * kt_stride;
    const T* k1 = k0 + kt_stride;
    lo0 = _mm256_fmadd_ps(q0, LoadKv8(k0, m_lo, count), lo0);
    hi0 = _mm256_fmadd_ps(q0, LoadKv8(k0 + 8, m_hi, n_hi), hi0);
    lo1 = _mm256_fmadd_ps(q1, LoadKv8(k1, m_lo, count), lo1);
    hi1 = _mm256_fmadd_ps(q1, LoadKv8(k1 + 8, m_hi, n_hi), hi1);
  }
  if (i < d) {
    const __m256 q0 = _mm256_set1_ps(q[i]);
    const T* k0 = kt + i * kt_stride;
    lo0 = _mm256_fmadd_ps(q0, LoadKv8(k0, m_lo, count), lo0);
    hi0 = _mm256_fmadd_ps(q0, LoadKv8(k0 + 8, m_hi, n_hi), hi0);
  }
  const __m256 sc = _mm256_set1_ps(scale);
  _mm256_storeu_ps(s, _mm256_mul_ps(_mm256_add_ps(lo0, lo1), sc));
  _mm256_storeu_ps(s + 8, _mm256_mul_ps(_mm256_add_ps(hi0, hi1), sc));
}


// exp(x); see the AVX-512 variant. 2^n is built in the exponent field
// (-126 <= n <= 127 after the clamp to [-87, 88]).
inline __m256 Exp(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

float SoftmaxStep(float* s, int64_t count, float* m, float* l) {
  float m_new = *m;
  for (int64_t j = 0; j < count; ++j) m_new = s[j] > m_new ? s[j] : m_new;
  // exp(-inf) would clamp to exp(-87), not 0: the first step says 0 itself.
  const float alpha = m_new == *m                ? 1.0f
                      : *m == -__builtin_inff() ? 0.0f
                                                 : _mm256_cvtss_f32(Exp(_mm256_set1_ps(*m - m_new)));
  alignas(32) float tmp[16];
  const __m256 vm = _mm256_set1_ps(m_new);
  _mm256_store_ps(tmp, Exp(_mm256_sub_ps(_mm256_loadu_ps(s), vm)));
  _mm256_store_ps(tmp + 8, Exp(_mm256_sub_ps(_mm256_loadu_ps(s + 8), vm)));
  float sum = 0.0f;
  for (int64_t j = 0; j < count; ++j) {
    s[j] = tmp[j];
    sum += tmp[j];
  }
  *l = *l * alpha + sum;
  *m = m_new;
  return alpha;
}

template <typename T>
void AccumulateV(float* acc, float alpha, const float* p, const T* v, int64_t v_stride,
                 int64_t count, int64_t d) {
  const __m256 va = _mm256_set1_ps(alpha);
  const int64_t full = d / 8 * 8;
  for (int64_t i = 0; i < full; i += 8) {
    __m256 r = _mm256_mul_ps(_mm256_loadu_ps(acc + i), va);
    for (int64_t j = 0; j < count; ++j) {
      r = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), LoadKv8(v + j * v_stride + i), r);
    }
    _mm256_storeu_ps(acc + i, r);
  }
  for (int64_t i = full; i < d; ++i) {
    float r = acc[i] * alpha;
    for (int64_t j = 0; j < count; ++j) r += p[j] * KvValue(v[j * v_stride + i]);
    acc[i] = r;
  }
}

}  // namespace

void GemmRangeAvx2(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  switch (a.w_type) {
    case kWF32: Range<kWF32>(a, n_begin, n_end); return;
    case kWF16: Range<kWF16>(a, n_begin, n_end); return;
    case kWBF16: Range<kWBF16>(a, n_begin, n_end); return;
    default: __builtin_trap();  // gemm.cc validated the dtype
  }
}

float SumF32Avx2(const float* x, int64_t n) {
  // kSumStreams equal parts read side by side, one accumulator each.
  const int64_t part = n / kSumStreams / 8 * 8;
  __m256 acc[kSumStreams];
  for (int s = 0; s < kSumStreams; ++s) acc[s] = _mm256_setzero_ps();
  for (int64_t i = 0; i < part; i += 8) {
    for (int s = 0; s < kSumStreams; ++s) {
      acc[s] = _mm256_add_ps(acc[s], _mm256_loadu_ps(x + s * part + i));
    }
  }
  int64_t i = kSumStreams * part;
  for (; i + 8 <= n; i += 8) acc[0] = _mm256_add_ps(acc[0], _mm256_loadu_ps(x + i));
  float tail = 0;
  for (; i < n; ++i) tail += x[i];
  for (int s = 1; s < kSumStreams; ++s) acc[0] = _mm256_add_ps(acc[0], acc[s]);
  return ReduceAdd(acc[0]) + tail;
}

void SiluMulAvx2(const float* gate, const float* up, float* out, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 e = Exp(_mm256_sub_ps(_mm256_setzero_ps(), g));
    _mm256_storeu_ps(out + i,
                     _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), _mm256_loadu_ps(up + i)));
  }
  if (i < n) {
    float g[8] = {}, u[8] = {}, o[8];
    __builtin_memcpy(g, gate + i, static_cast<size_t>(n - i) * 4);
    __builtin_memcpy(u, up + i, static_cast<size_t>(n - i) * 4);
    SiluMulAvx2(g, u, o, 8);
    __builtin_memcpy(out + i, o, static_cast<size_t>(n - i) * 4);
  }
}

const AttentionVecOps kAttentionAvx2 = {&Scores<float>, &Scores<uint16_t>, &SoftmaxStep,
                                        &AccumulateV<float>, &AccumulateV<uint16_t>};

}  // namespace kestrel::kernels::cpu::isa
