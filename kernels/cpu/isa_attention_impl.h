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
// Slot groups scored (and vectors of d weighed) per pass: two where the
// register file holds 2 x 8 accumulators (AVX-512), one otherwise.
template <class T>
constexpr int kDotGroups = kRunVecs<T> == 1 ? 2 : 1;

// Traits with unmasked zips (AVX-512: ZipBf16Full, ZipBf16Full2) take them
// for a group whose kKeyTile slots may all be read: a full one, or one
// staged through the zero tile.
template <class T>
constexpr bool kFullZips = requires(const uint16_t* x, typename T::Bf16Pairs* o) {
  T::ZipBf16Full(x, x);
  T::ZipBf16Full2(x, x, o, o);
};

// The K pairs of slot group gr (rows of kt_stride, slots [0, n) valid,
// `whole`: all kKeyTile slots readable) into kp[i * VR + gr * VG + c], as
// ZipDotGroup lays them out.
template <class T>
void ZipKeys(const uint16_t* kt, int64_t kt_stride, int64_t d, int64_t n, bool whole, int64_t gr,
             typename T::Bf16Pairs* kp) {
  constexpr int L = T::kLanes;
  constexpr int VG = kRunVecs<T>;
  constexpr int VR = VG * static_cast<int>(kDotRunSlots / kKeyTile);
  const int64_t dpairs = (d + 1) / 2;
  if constexpr (kFullZips<T> && VG == 1) {
    if (whole && d % 2 == 0) {
      for (int64_t i = 0; i < dpairs; ++i) {
        const uint16_t* r0 = kt + 2 * i * kt_stride;
        kp[i * VR + gr] = T::ZipBf16Full(r0, r0 + kt_stride);
      }
      return;
    }
  }
  for (int64_t i = 0; i < dpairs; ++i) {
    const uint16_t* r0 = kt + 2 * i * kt_stride;
    const bool has_r1 = 2 * i + 1 < d;
    #pragma GCC unroll 16
    for (int c = 0; c < VG; ++c) {
      const int64_t left = n - c * L;
      const int64_t nn = left <= 0 ? 0 : left >= L ? L : left;
      kp[i * VR + gr * VG + c] = T::ZipBf16(r0 + c * L, nn, has_r1 ? r0 + kt_stride + c * L : nullptr,
                                            has_r1 ? nn : 0);
    }
  }
}

// The V pairs of slot group gr (keys [0, n) of d elements from vb) into
// vp[c * kRunPairs + gr * kKeyTile / 2 + j], as ZipDotGroup lays them out;
// two vectors of d at a time where the zips need no masks.
template <class T>
void ZipValues(const uint16_t* vb, int64_t d, int64_t n, int64_t gr, typename T::Bf16Pairs* vp) {
  constexpr int L = T::kLanes;
  constexpr int64_t kRunPairs = kDotRunSlots / 2;
  const int64_t pairs = (n + 1) / 2, dvecs = (d + L - 1) / L;
  typename T::Bf16Pairs* out = vp + gr * (kKeyTile / 2);
  int64_t c = 0;
  if constexpr (kFullZips<T>) {
    if (n == kKeyTile) {
      for (; c + 2 <= d / L; c += 2) {
        for (int64_t j = 0; j < pairs; ++j) {
          const uint16_t* v0 = vb + 2 * j * d + c * L;
          T::ZipBf16Full2(v0, v0 + d, out + c * kRunPairs + j, out + (c + 1) * kRunPairs + j);
        }
      }
    }
  }
  for (; c < dvecs; ++c) {
    const int64_t nc = d - c * L < L ? d - c * L : L;
    for (int64_t j = 0; j < pairs; ++j) {
      const uint16_t* v0 = vb + 2 * j * d + c * L;
      const bool has_v1 = 2 * j + 1 < n;
      out[c * kRunPairs + j] = T::ZipBf16(v0, nc, has_v1 ? v0 + d : nullptr, has_v1 ? nc : 0);
    }
  }
}

// A run is kDotRunSlots / kKeyTile slot groups of kKeyTile slots (kRunVecs
// vectors each). The K and V pairs of group gr go to kp[i * VR + gr * VG + c]
// (keys [c L, c L + L) of the group, K rows 2i and 2i + 1) and
// vp[c * kRunPairs + gr * kKeyTile / 2 + j] (elements [c L, c L + L) of the
// group's keys 2j and 2j + 1); slots without a key read as zero. A group
// that one segment fills from its first slot (every block of >= kKeyTile
// keys) is zipped straight from the cache; any other (small blocks, a
// sliding window starting inside it) is staged through a zero tile first.
template <class T>
void ZipDotGroup(const Bf16DotRun& a, int64_t gr, int64_t seg_begin, int64_t seg_end,
                 uint16_t* stage, typename T::Bf16Pairs* kp, typename T::Bf16Pairs* vp) {
  const int64_t d = a.d;
  const int64_t g0 = gr * kKeyTile;
  const Bf16DotSegment& s0 = a.segs[seg_begin];
  const Bf16DotSegment& s1 = a.segs[seg_end - 1];
  const int64_t n = s1.slot + s1.count - g0;  // the group's slots [0, n) are read
  const bool direct = seg_end - seg_begin == 1 && s0.slot == g0;
  if (direct) {
    ZipKeys<T>(s0.k, a.k_stride, d, n, n == kKeyTile, gr, kp);
    ZipValues<T>(s0.v, d, n, gr, vp);
    return;
  }
  for (int64_t i = 0; i < d * kKeyTile; ++i) stage[i] = 0;
  for (int64_t sg = seg_begin; sg < seg_end; ++sg) {
    const Bf16DotSegment& seg = a.segs[sg];
    for (int64_t i = 0; i < d; ++i) {
      for (int64_t j = 0; j < seg.count; ++j) {
        stage[i * kKeyTile + (seg.slot - g0) + j] = seg.k[i * a.k_stride + j];
      }
    }
  }
  ZipKeys<T>(stage, kKeyTile, d, n, /*whole=*/true, gr, kp);
  for (int64_t i = 0; i < n * d; ++i) stage[i] = 0;
  for (int64_t sg = seg_begin; sg < seg_end; ++sg) {
    const Bf16DotSegment& seg = a.segs[sg];
    for (int64_t i = 0; i < seg.count * d; ++i) stage[(seg.slot - g0) * d + i] = seg.v[i];
  }
  ZipValues<T>(stage, d, n, gr, vp);
}

// Walks Bf16DotRun::prefetch a few cache lines at a time, so that the next
// run's loads are spread through this run's arithmetic: issued in one
// burst they fill the miss queue and stall the loads being computed on.
class PrefetchCursor {
 public:
  explicit PrefetchCursor(const Bf16DotRun& a)
      : regions_(reinterpret_cast<const char* const*>(a.prefetch)),
        num_(a.num_prefetch),
        bytes_(a.prefetch_bytes) {}
  // Lines per step so that `steps` steps cover every region.
  void Pace(int64_t steps) {
    const int64_t lines = num_ * ((bytes_ + 63) / 64);
    per_step_ = steps > 0 ? (lines + steps - 1) / steps : lines;
  }
  void Step() {
    for (int64_t k = 0; k < per_step_ && f_ < num_; ++k) {
      __builtin_prefetch(regions_[f_] + off_, 0, 1);
      off_ += 64;
      if (off_ >= bytes_) off_ = 0, ++f_;
    }
  }
  void Rest() {
    per_step_ = int64_t{1} << 40;
    Step();
  }

 private:
  const char* const* regions_;
  int64_t num_, bytes_;
  int64_t f_ = 0, off_ = 0, per_step_ = 0;
};

template <class T>
void Bf16DotRunImpl(const Bf16DotRun& a) {
  using Vec = typename T::Vec;
  using Pairs = typename T::Bf16Pairs;
  constexpr int L = T::kLanes;
  constexpr int VG = kRunVecs<T>;
  constexpr int64_t kGroups = kDotRunSlots / kKeyTile;
  constexpr int VR = VG * static_cast<int>(kGroups);
  constexpr int R = kDotRows<T>;
  constexpr int64_t kRunPairs = kDotRunSlots / 2;
  static_assert(kDotRunSlots % kKeyTile == 0 && kKeyTile % 2 == 0);
  const int64_t d = a.d;
  const int64_t dpairs = (d + 1) / 2, dvecs = (d + L - 1) / L;
  // The run's keys are the slots [first, span); the groups [g_begin, g_end)
  // hold them, and every row works over those groups' slots, so the sums
  // below run over the same slots in the same order whatever the segments.
  const int64_t first = a.segs[0].slot;
  const int64_t span = a.segs[a.num_segs - 1].slot + a.segs[a.num_segs - 1].count;
  const int64_t g_begin = first / kKeyTile, g_end = (span + kKeyTile - 1) / kKeyTile;
  const int64_t v_begin = g_begin * VG, v_end = g_end * VG;
  const int64_t slot_begin = g_begin * kKeyTile, slot_end = g_end * kKeyTile;
  const int64_t pair_begin = slot_begin / 2, pair_end = (span + 1) / 2;

  // Built once per run, read by every row from L1.
  alignas(64) Pairs kp[(kMaxAttentionHeadDim / 2) * VR];
  alignas(64) Pairs vp[(kMaxAttentionHeadDim / L + 1) * kRunPairs];
  alignas(64) uint16_t stage[kMaxAttentionHeadDim * kKeyTile];
  for (int64_t gr = g_begin, sg = 0; gr < g_end; ++gr) {
    int64_t sg_end = sg;
    while (sg_end < a.num_segs && a.segs[sg_end].slot < (gr + 1) * kKeyTile) ++sg_end;
    ZipDotGroup<T>(a, gr, sg, sg_end, stage, kp, vp);
    sg = sg_end;
  }

  alignas(64) float s[kDotRowBatch][kDotRunSlots];
  alignas(64) uint16_t p16[kDotRowBatch][kDotRunSlots];
  float alpha[kDotRowBatch];
  bool active[kDotRowBatch];
  const float neg_inf = -__builtin_inff();
  PrefetchCursor prefetch(a);
  {
    // Steps: every d pair of every scoring pass and every key pair of every
    // weighing pass of the first row batch.
    const int64_t row_groups = ((a.rows < kDotRowBatch ? a.rows : kDotRowBatch) + R - 1) / R;
    const int64_t ng = g_end - g_begin;
    const int64_t score_passes = (ng + kDotGroups<T> - 1) / kDotGroups<T> * row_groups;
    const int64_t weigh_passes = (dvecs + kDotGroups<T> - 1) / kDotGroups<T> * row_groups;
    prefetch.Pace(score_passes * dpairs + weigh_passes * (pair_end - pair_begin));
  }
  for (int64_t row0 = 0; row0 < a.rows; row0 += kDotRowBatch) {
    const int64_t nr = a.rows - row0 < kDotRowBatch ? a.rows - row0 : kDotRowBatch;
    // Scores, kDotGroups slot groups at a time: R rows at a time (spare
    // slots of the last row group repeat its last row and are not stored).
    auto score = [&]<int NG>(int64_t gr) {
      for (int64_t rb = 0; rb < nr; rb += R) {
        const uint32_t* q[R];
        #pragma GCC unroll 8
        for (int r = 0; r < R; ++r) q[r] = a.q + (row0 + (rb + r < nr ? rb + r : nr - 1)) * a.q_stride;
        Vec acc[R][NG * VG];
        #pragma GCC unroll 8
        for (int r = 0; r < R; ++r)
          #pragma GCC unroll 16
          for (int c = 0; c < NG * VG; ++c) acc[r][c] = T::Zero();
        const Pairs* kg = kp + gr * VG;
        for (int64_t i = 0; i < dpairs; ++i) {
          if (row0 == 0) prefetch.Step();
          #pragma GCC unroll 16
          for (int c = 0; c < NG * VG; ++c) {
            const Pairs kv = kg[i * VR + c];
            #pragma GCC unroll 8
            for (int r = 0; r < R; ++r) acc[r][c] = T::DotBf16(acc[r][c], T::SplatPair(q[r][i]), kv);
          }
        }
        #pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          if (rb + r >= nr) break;
          #pragma GCC unroll 16
          for (int c = 0; c < NG * VG; ++c) T::Store(s[rb + r] + gr * kKeyTile + c * L, acc[r][c]);
        }
      }
    };
    for (int64_t gr = g_begin; gr < g_end; gr += kDotGroups<T>) {
      if (kDotGroups<T> == 2 && gr + 1 < g_end) {
        score.template operator()<kDotGroups<T>>(gr);
      } else {
        for (int64_t g = gr; g < g_end && g < gr + kDotGroups<T>; ++g) score.template operator()<1>(g);
      }
    }
    // One online-softmax step per row over the whole run: one max, one
    // rescale and one sum for up to kDotRunSlots keys. p is rounded to
    // bf16, and the denominator sums the rounded values, so the weights
    // still sum to 1.
    for (int64_t r = 0; r < nr; ++r) {
      const int64_t row = row0 + r;
      const int64_t lo = a.lo[row] > first ? a.lo[row] : first;
      const int64_t hi = a.hi[row] < span - 1 ? a.hi[row] : span - 1;
      active[r] = lo <= hi;
      alpha[r] = 1.0f;
      if (!active[r]) {
        for (int64_t j = slot_begin; j < slot_end; ++j) p16[r][j] = 0;
        continue;
      }
      float* sr = s[r];
      const bool partial = lo > slot_begin || hi < slot_end - 1;
      if (partial) {
        for (int64_t j = slot_begin; j < lo; ++j) sr[j] = neg_inf;
        for (int64_t j = hi + 1; j < slot_end; ++j) sr[j] = neg_inf;
      }
      // Zero-initialised only because GCC cannot see that the later loops
      // read no vector the first one did not write.
      Vec v[VR] = {};
      Vec vmax = T::Set1(neg_inf);
      #pragma GCC unroll 64
      for (int c = 0; c < VR; ++c) {
        if (c < v_begin || c >= v_end) continue;
        v[c] = T::Load(sr + c * L);
        vmax = T::Max(vmax, v[c]);
      }
      const float run_max = T::ReduceMaxMasked(vmax, T::TailMask(L));
      const float m_old = a.m[row];
      const float m_new = run_max > m_old ? run_max : m_old;
      // exp(-inf) would clamp to exp(-87), not 0: the first step says 0 itself.
      const float al = m_new == m_old    ? 1.0f
                       : m_old == neg_inf ? 0.0f
                                          : T::First(Exp<T>(T::Set1(m_old - m_new)));
      const Vec vm = T::Set1(m_new);
      uint16_t* pr = p16[r];
      #pragma GCC unroll 64
      for (int c = 0; c < VR; ++c) {
        if (c < v_begin || c >= v_end) continue;
        T::StoreBf16(pr + c * L, Exp<T>(T::Sub(v[c], vm)));
      }
      if (partial) {
        for (int64_t j = slot_begin; j < lo; ++j) pr[j] = 0;
        for (int64_t j = hi + 1; j < slot_end; ++j) pr[j] = 0;
      }
      Vec vsum = T::Zero();
      #pragma GCC unroll 64
      for (int c = 0; c < VR; ++c) {
        if (c < v_begin || c >= v_end) continue;
        vsum = T::Add(vsum, T::LoadBf16(pr + c * L));
      }
      a.l[row] = a.l[row] * al + T::ReduceAdd(vsum);
      a.m[row] = m_new;
      alpha[r] = al;
    }
    // acc = acc * alpha + p · V, kDotGroups vectors of d at a time (every
    // p pair loaded once for them), over the run's key pairs (inactive
    // rows compute on zero p and are not stored).
    auto weigh = [&]<int NC>(int64_t c0) {
      typename T::Mask mask[NC];
      #pragma GCC unroll 2
      for (int c = 0; c < NC; ++c) {
        const int64_t left = d - (c0 + c) * L;
        mask[c] = T::TailMask(left < L ? left : L);
      }
      const Pairs* vc = vp + c0 * kRunPairs;
      for (int64_t rb = 0; rb < nr; rb += R) {
        float* o[R];
        const uint16_t* pr[R];
        Vec acc[R][NC];
        #pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          const int64_t rr = rb + r < nr ? rb + r : nr - 1;
          o[r] = a.acc + (row0 + rr) * a.acc_stride + c0 * L;
          pr[r] = p16[rr];
          const Vec al = T::Set1(alpha[rr]);
          #pragma GCC unroll 2
          for (int c = 0; c < NC; ++c) acc[r][c] = T::Mul(T::LoadMasked(o[r] + c * L, mask[c]), al);
        }
        for (int64_t j = pair_begin; j < pair_end; ++j) {
          if (row0 == 0) prefetch.Step();
          Pairs vv[NC];
          #pragma GCC unroll 2
          for (int c = 0; c < NC; ++c) vv[c] = vc[c * kRunPairs + j];
          #pragma GCC unroll 8
          for (int r = 0; r < R; ++r) {
            uint32_t w;
            __builtin_memcpy(&w, pr[r] + 2 * j, sizeof w);
            const Pairs pw = T::SplatPair(w);
            #pragma GCC unroll 2
            for (int c = 0; c < NC; ++c) acc[r][c] = T::DotBf16(acc[r][c], pw, vv[c]);
          }
        }
        #pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          if (rb + r < nr && active[rb + r]) {
            #pragma GCC unroll 2
            for (int c = 0; c < NC; ++c) T::StoreMasked(o[r] + c * L, mask[c], acc[r][c]);
          }
        }
      }
    };
    int64_t c = 0;
    if constexpr (kDotGroups<T> == 2) {
      for (; c + 2 <= dvecs; c += 2) weigh.template operator()<2>(c);
    }
    for (; c < dvecs; ++c) weigh.template operator()<1>(c);
  }
  prefetch.Rest();
}

template <class T>
constexpr AttentionVecOps MakeAttentionVecOps() {
  return {&Scores<T, float>,         &Scores<T, uint16_t>,      &SoftmaxStep<T>,
          &AccumulateV<T, float>,    &AccumulateV<T, uint16_t>, &Bf16DotRunImpl<T>};
}

}  // namespace
}  // namespace kestrel::kernels::cpu::isa

#endif  // KESTREL_KERNELS_CPU_ISA_ATTENTION_IMPL_H_
