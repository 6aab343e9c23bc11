// The attention helpers of isa_kernels.h (AttentionVecOps: scores over a run
// of transposed keys, one online-softmax step, V accumulation; F32 and bf16
// caches) over an ISA traits type (isa_traits_*.h). Internal linkage:
// included only by the per-ISA translation units.
#ifndef KESTREL_KERNELS_CPU_ISA_ATTENTION_IMPL_H_
#define KESTREL_KERNELS_CPU_ISA_ATTENTION_IMPL_H_

#include <cstdint>

#include "kernels/cpu/isa_exp_impl.h"
#include "kernels/cpu/isa_kernels.h"

namespace kestrel::kernels::cpu::isa {
namespace {

// kLanes K/V elements as F32: F32 as is, bf16 widened exactly.
template <class T>
inline typename T::Vec LoadKv(const float* p) { return T::Load(p); }
template <class T>
inline typename T::Vec LoadKv(const uint16_t* p) { return T::LoadBf16(p); }
template <class T>
inline typename T::Vec LoadKvMasked(const float* p, typename T::Mask m) {
  return T::LoadMasked(p, m);
}
template <class T>
inline typename T::Vec LoadKvMasked(const uint16_t* p, typename T::Mask m) {
  return T::LoadBf16Masked(p, m);
}

// A run of kKeyTile keys is kRunVecs vectors; each gets kChains partial sums
// over d so that four FMA chains are in flight (AVX-512: 1 x 4, AVX2: 2 x 2).
template <class T>
constexpr int kRunVecs = static_cast<int>(kKeyTile) / T::kLanes;
template <class T>
constexpr int kChains = kRunVecs<T> >= 4 ? 1 : 4 / kRunVecs<T>;

// The mask of vector c of a run of `count` keys (1 <= count <= kKeyTile).
template <class T>
inline typename T::Mask RunMask(int64_t count, int c) {
  if constexpr (kRunVecs<T> == 1) {
    return T::TailMask(count);
  } else {
    const int64_t n = count - c * T::kLanes;
    return T::TailMask(n <= 0 ? 0 : n >= T::kLanes ? T::kLanes : n);
  }
}

template <class T, typename E>
void Scores(const float* q, const E* kt, int64_t kt_stride, int64_t count, int64_t d,
            float scale, float* s) {
  using Vec = typename T::Vec;
  constexpr int L = T::kLanes;
  constexpr int V = kRunVecs<T>;
  constexpr int S = kChains<T>;
  static_assert(V * L == kKeyTile);
  typename T::Mask mask[V];
  for (int c = 0; c < V; ++c) mask[c] = RunMask<T>(count, c);
  Vec acc[S][V];
  for (int u = 0; u < S; ++u)
    for (int c = 0; c < V; ++c) acc[u][c] = T::Zero();
  int64_t i = 0;
  for (; i + S <= d; i += S) {
    #pragma GCC unroll 4
    for (int u = 0; u < S; ++u) {
      const Vec qv = T::Set1(q[i + u]);
      const E* k = kt + (i + u) * kt_stride;
      #pragma GCC unroll 16
      for (int c = 0; c < V; ++c) acc[u][c] = T::Fmadd(qv, LoadKvMasked<T>(k + c * L, mask[c]), acc[u][c]);
    }
  }
  for (; i < d; ++i) {
    const Vec qv = T::Set1(q[i]);
    #pragma GCC unroll 16
    for (int c = 0; c < V; ++c) {
      acc[0][c] = T::Fmadd(qv, LoadKvMasked<T>(kt + i * kt_stride + c * L, mask[c]), acc[0][c]);
    }
  }
  const Vec sc = T::Set1(scale);
  #pragma GCC unroll 16
  for (int c = 0; c < V; ++c) {
    Vec sum = acc[0][c];
    if constexpr (S == 4) {
      sum = T::Add(T::Add(acc[0][c], acc[1][c]), T::Add(acc[2][c], acc[3][c]));
    } else if constexpr (S == 2) {
      sum = T::Add(acc[0][c], acc[1][c]);
    } else {
      static_assert(S == 1);
    }
    T::Store(s + c * L, T::Mul(sum, sc));
  }
}

template <class T>
float SoftmaxStep(float* s, int64_t count, float* m, float* l) {
  using Vec = typename T::Vec;
  constexpr int L = T::kLanes;
  constexpr int V = kRunVecs<T>;
  // Zero-initialised only because GCC cannot see that the second loop
  // reads no more vectors than the first one wrote.
  typename T::Mask mask[V] = {};
  Vec v[V] = {};
  float block_max = -__builtin_inff();
  #pragma GCC unroll 16
  for (int c = 0; c < V; ++c) {
    if (c > 0 && c * L >= count) break;
    mask[c] = RunMask<T>(count, c);
    v[c] = T::LoadMasked(s + c * L, mask[c]);
    const float r = T::ReduceMaxMasked(v[c], mask[c]);
    block_max = c == 0 || r > block_max ? r : block_max;
  }
  const float m_new = block_max > *m ? block_max : *m;
  // exp(-inf) would clamp to exp(-87), not 0: the first step says 0 itself.
  const float alpha = m_new == *m                ? 1.0f
                      : *m == -__builtin_inff() ? 0.0f
                                                 : T::First(Exp<T>(T::Set1(*m - m_new)));
  const Vec vm = T::Set1(m_new);
  float sum = 0.0f;
  #pragma GCC unroll 16
  for (int c = 0; c < V; ++c) {
    if (c > 0 && c * L >= count) break;
    const Vec e = Exp<T>(T::Sub(v[c], vm));
    T::StoreMasked(s + c * L, mask[c], e);
    const float r = T::ReduceAddMasked(e, mask[c]);
    sum = c == 0 ? r : sum + r;
  }
  *l = *l * alpha + sum;
  *m = m_new;
  return alpha;
}

// acc = acc * alpha + sum_j p[j] * v_j with the output row in C registers
// across all keys (d == C * kLanes).
template <class T, int C, typename E>
void AccumulateVChunks(float* acc, float alpha, const float* p, const E* v, int64_t v_stride,
                       int64_t count) {
  using Vec = typename T::Vec;
  constexpr int L = T::kLanes;
  const Vec va = T::Set1(alpha);
  Vec r[C];
  #pragma GCC unroll 16
  for (int c = 0; c < C; ++c) r[c] = T::Mul(T::Load(acc + L * c), va);
  for (int64_t j = 0; j < count; ++j) {
    const Vec pj = T::Set1(p[j]);
    const E* vr = v + j * v_stride;
    #pragma GCC unroll 16
    for (int c = 0; c < C; ++c) r[c] = T::Fmadd(pj, LoadKv<T>(vr + L * c), r[c]);
  }
  #pragma GCC unroll 16
  for (int c = 0; c < C; ++c) T::Store(acc + L * c, r[c]);
}

// Any other d: one vector of the row at a time, the last one masked. Out of
// line, so that the register-resident cases above need no stack frame.
template <class T, typename E>
[[gnu::noinline]] void AccumulateVAnyD(float* acc, float alpha, const float* p, const E* v,
                                       int64_t v_stride, int64_t count, int64_t d) {
  using Vec = typename T::Vec;
  constexpr int L = T::kLanes;
  const Vec va = T::Set1(alpha);
  int64_t i = 0;
  for (; i + L <= d; i += L) {
    Vec r = T::Mul(T::Load(acc + i), va);
    for (int64_t j = 0; j < count; ++j) {
      r = T::Fmadd(T::Set1(p[j]), LoadKv<T>(v + j * v_stride + i), r);
    }
    T::Store(acc + i, r);
  }
  if (i < d) {
    const typename T::Mask mask = T::TailMask(d - i);
    Vec r = T::Mul(T::LoadMasked(acc + i, mask), va);
    for (int64_t j = 0; j < count; ++j) {
      r = T::Fmadd(T::Set1(p[j]), LoadKvMasked<T>(v + j * v_stride + i, mask), r);
    }
    T::StoreMasked(acc + i, mask, r);
  }
}

template <class T, typename E>
void AccumulateV(float* acc, float alpha, const float* p, const E* v, int64_t v_stride,
                 int64_t count, int64_t d) {
  constexpr int L = T::kLanes;
  // Explicit instantiations: d = C * kLanes for C in [1, kMaxVChunks]
  // (AVX-512: head dims 16..128 in steps of 16, so 64, 80, 96, 128; AVX2:
  // 8..64). This runs once per query row and run of keys, so the dispatch
  // stays a switch and the fallback out of line.
  static_assert(T::kMaxVChunks <= 8);
#define KESTREL_CHUNKS_CASE(C)                                              \
  case C * L:                                                               \
    if constexpr (C <= T::kMaxVChunks) {                                    \
      return AccumulateVChunks<T, C>(acc, alpha, p, v, v_stride, count);    \
    }                                                                       \
    break;
  switch (d) {
    KESTREL_CHUNKS_CASE(1)
    KESTREL_CHUNKS_CASE(2)
    KESTREL_CHUNKS_CASE(3)
    KESTREL_CHUNKS_CASE(4)
    KESTREL_CHUNKS_CASE(5)
    KESTREL_CHUNKS_CASE(6)
    KESTREL_CHUNKS_CASE(7)
    KESTREL_CHUNKS_CASE(8)
    default: break;
  }
#undef KESTREL_CHUNKS_CASE
  AccumulateVAnyD<T>(acc, alpha, p, v, v_stride, count, d);
}

// Bf16DotRun: rows in groups of kDotRows share every K and V pair vector
// they load (AVX-512: 8 rows of one vector each; AVX2: 4 rows of two; the
// scalar variant one row of 16), up to kDotRowBatch rows per pass.
template <class T>
constexpr int kDotRows = kRunVecs<T> >= 8 ? 1 : 8 / kRunVecs<T>;
constexpr int64_t kDotRowBatch = 64;

template <class T>
void Bf16DotRunImpl(const Bf16DotRun& a) {
  using Vec = typename T::Vec;
  using Pairs = typename T::Bf16Pairs;
  constexpr int L = T::kLanes;
  constexpr int V = kRunVecs<T>;
  constexpr int R = kDotRows<T>;
  constexpr int64_t kHalf = kKeyTile / 2;
  const int64_t d = a.d, count = a.count;
  const int64_t dpairs = (d + 1) / 2, key_pairs = (count + 1) / 2, dvecs = (d + L - 1) / L;

  // The run's keys as pairs along d (kp[i * V + c]: keys [c L, c L + L) of
  // K rows 2i and 2i + 1) and its values as pairs of keys (vp[c * kHalf + j]:
  // elements [c L, c L + L) of keys 2j and 2j + 1). Built once, read by
  // every row from L1; slots past `count` and rows past d read as zero.
  alignas(64) Pairs kp[(kMaxAttentionHeadDim / 2) * V];
  alignas(64) Pairs vp[(kMaxAttentionHeadDim / L + 1) * kHalf];
  for (int64_t i = 0; i < dpairs; ++i) {
    const uint16_t* r0 = a.k + 2 * i * a.k_stride;
    const bool has_r1 = 2 * i + 1 < d;
    #pragma GCC unroll 16
    for (int c = 0; c < V; ++c) {
      const int64_t left = count - c * L;
      const int64_t n = left <= 0 ? 0 : left >= L ? L : left;
      kp[i * V + c] = T::ZipBf16(r0 + c * L, n, has_r1 ? r0 + a.k_stride + c * L : nullptr,
                                 has_r1 ? n : 0);
    }
  }
  for (int64_t c = 0; c < dvecs; ++c) {
    const int64_t n = d - c * L < L ? d - c * L : L;
    for (int64_t j = 0; j < key_pairs; ++j) {
      const uint16_t* v0 = a.v + 2 * j * d + c * L;
      const bool has_v1 = 2 * j + 1 < count;
      vp[c * kHalf + j] = T::ZipBf16(v0, n, has_v1 ? v0 + d : nullptr, has_v1 ? n : 0);
    }
  }

  alignas(64) float s[kDotRowBatch][kKeyTile];
  alignas(64) uint16_t p16[kDotRowBatch][kKeyTile];
  float alpha[kDotRowBatch];
  bool active[kDotRowBatch];
  const float neg_inf = -__builtin_inff();
  for (int64_t row0 = 0; row0 < a.rows; row0 += kDotRowBatch) {
    const int64_t nr = a.rows - row0 < kDotRowBatch ? a.rows - row0 : kDotRowBatch;
    // Scores: R rows at a time (spare slots of the last group repeat its
    // last row and are not stored).
    for (int64_t rb = 0; rb < nr; rb += R) {
      const uint32_t* q[R];
      #pragma GCC unroll 8
      for (int r = 0; r < R; ++r) q[r] = a.q + (row0 + (rb + r < nr ? rb + r : nr - 1)) * a.q_stride;
      Vec acc[R][V];
      #pragma GCC unroll 8
      for (int r = 0; r < R; ++r)
        #pragma GCC unroll 16
        for (int c = 0; c < V; ++c) acc[r][c] = T::Zero();
      for (int64_t i = 0; i < dpairs; ++i) {
        #pragma GCC unroll 16
        for (int c = 0; c < V; ++c) {
          const Pairs kv = kp[i * V + c];
          #pragma GCC unroll 8
          for (int r = 0; r < R; ++r) acc[r][c] = T::DotBf16(acc[r][c], T::SplatPair(q[r][i]), kv);
        }
      }
      #pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        if (rb + r >= nr) break;
        #pragma GCC unroll 16
        for (int c = 0; c < V; ++c) T::Store(s[rb + r] + c * L, acc[r][c]);
      }
    }
    // One online-softmax step per row; p rounded to bf16, and the
    // denominator sums the rounded values, so the weights still sum to 1.
    for (int64_t r = 0; r < nr; ++r) {
      const int64_t row = row0 + r;
      const int64_t lo = a.lo[row] > 0 ? a.lo[row] : 0;
      const int64_t hi = a.hi[row] < count - 1 ? a.hi[row] : count - 1;
      active[r] = lo <= hi;
      alpha[r] = 1.0f;
      if (!active[r]) {
        for (int64_t j = 0; j < kKeyTile; ++j) p16[r][j] = 0;
        continue;
      }
      float* sr = s[r];
      const bool partial = lo > 0 || hi < kKeyTile - 1;
      if (partial) {
        for (int64_t j = 0; j < lo; ++j) sr[j] = neg_inf;
        for (int64_t j = hi + 1; j < kKeyTile; ++j) sr[j] = neg_inf;
      }
      Vec v[V];
      float run_max = neg_inf;
      #pragma GCC unroll 16
      for (int c = 0; c < V; ++c) {
        v[c] = T::Load(sr + c * L);
        const float x = T::ReduceMaxMasked(v[c], T::TailMask(L));
        run_max = x > run_max ? x : run_max;
      }
      const float m_old = a.m[row];
      const float m_new = run_max > m_old ? run_max : m_old;
      // exp(-inf) would clamp to exp(-87), not 0: the first step says 0 itself.
      const float al = m_new == m_old    ? 1.0f
                       : m_old == neg_inf ? 0.0f
                                          : T::First(Exp<T>(T::Set1(m_old - m_new)));
      const Vec vm = T::Set1(m_new);
      #pragma GCC unroll 16
      for (int c = 0; c < V; ++c) T::StoreBf16(p16[r] + c * L, Exp<T>(T::Sub(v[c], vm)));
      if (partial) {
        for (int64_t j = 0; j < lo; ++j) p16[r][j] = 0;
        for (int64_t j = hi + 1; j < kKeyTile; ++j) p16[r][j] = 0;
      }
      float sum = 0.0f;
      #pragma GCC unroll 16
      for (int c = 0; c < V; ++c) {
        const float x = T::ReduceAdd(T::LoadBf16(p16[r] + c * L));
        sum = c == 0 ? x : sum + x;
      }
      a.l[row] = a.l[row] * al + sum;
      a.m[row] = m_new;
      alpha[r] = al;
    }
    // acc = acc * alpha + p · V, one vector of d at a time.
    for (int64_t c = 0; c < dvecs; ++c) {
      const typename T::Mask mask = T::TailMask(d - c * L < L ? d - c * L : L);
      const Pairs* vc = vp + c * kHalf;
      for (int64_t rb = 0; rb < nr; rb += R) {
        float* o[R];
        const uint16_t* pr[R];
        Vec acc[R];
        #pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          const int64_t rr = rb + r < nr ? rb + r : nr - 1;
          o[r] = a.acc + (row0 + rr) * a.acc_stride + c * L;
          pr[r] = p16[rr];
          acc[r] = T::Mul(T::LoadMasked(o[r], mask), T::Set1(alpha[rr]));
        }
        for (int64_t j = 0; j < key_pairs; ++j) {
          const Pairs vv = vc[j];
          #pragma GCC unroll 8
          for (int r = 0; r < R; ++r) {
            uint32_t w;
            __builtin_memcpy(&w, pr[r] + 2 * j, sizeof w);
            acc[r] = T::DotBf16(acc[r], T::SplatPair(w), vv);
          }
        }
        #pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          if (rb + r < nr && active[rb + r]) T::StoreMasked(o[r], mask, acc[r]);
        }
      }
    }
  }
}

template <class T>
constexpr AttentionVecOps MakeAttentionVecOps() {
  return {&Scores<T, float>,         &Scores<T, uint16_t>,      &SoftmaxStep<T>,
          &AccumulateV<T, float>,    &AccumulateV<T, uint16_t>, &Bf16DotRunImpl<T>};
}

}  // namespace
}  // namespace kestrel::kernels::cpu::isa

#endif  // KESTREL_KERNELS_CPU_ISA_ATTENTION_IMPL_H_
