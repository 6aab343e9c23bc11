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

template <class T>
constexpr AttentionVecOps MakeAttentionVecOps() {
  return {&Scores<T, float>, &Scores<T, uint16_t>, &SoftmaxStep<T>, &AccumulateV<T, float>,
          &AccumulateV<T, uint16_t>};
}

}  // namespace
}  // namespace kestrel::kernels::cpu::isa

#endif  // KESTREL_KERNELS_CPU_ISA_ATTENTION_IMPL_H_
