// The GEMM of isa_kernels.h (GemmRange over a column range, and the bf16
// conversion of x for the bf16 dot-product path) over an ISA traits type
// (isa_traits_*.h). Internal linkage: included only by the per-ISA
// translation units.
//
// Layout: W stays [N, K] as in the checkpoint, so the vector lanes run along
// K: each output y[m, n] owns one accumulator vector, a register tile of MR
// rows x NR columns shares the x and W loads, and the lanes are summed once
// at the end in a fixed order. Every output therefore sees the same
// instruction sequence whatever the tile, M or thread split is (batch
// invariance). F32/F16 weights are widened to F32 in registers and use F32
// FMA (exact products); exact BF16 weights use the even/odd split of x
// (GemmArgs::xd) where the traits say so; with bf16_dot, x comes pre-rounded
// to bf16 (GemmArgs::xb) and each step is the traits' DotBf16 (vdpbf16ps on
// AVX512_BF16, two F32 FMAs on widened bf16 elsewhere).
//
// Decode (M <= kMaxSmallM) on AVX-512 reads one weight row at a time
// (kSmallNR = 1): a thread's rows are contiguous, so its weights are a
// single sequential stream the hardware prefetcher follows across rows.
// Eight rows side by side (eight streams 4 KiB apart at K = 2048) ran the
// TinyLlama decode at 91-92 % of the interleaved bandwidth probe against
// 98 % for one row (model_bench, bf16 dot products), and one row's
// dependency chain still runs at ~59 GB/s per core from L2. (M x 3 tiles for
// 4 <= M <= 8, streaming W only once, were measured slower at M = 8.)
#ifndef KESTREL_KERNELS_CPU_ISA_GEMM_IMPL_H_
#define KESTREL_KERNELS_CPU_ISA_GEMM_IMPL_H_

#include <cstdint>

#include "kernels/cpu/isa_kernels.h"

namespace kestrel::kernels::cpu::isa {
namespace {

constexpr int kWBF16Dot = 4;  // bf16 weights with bf16 activations (a.bf16_dot)

// Columns per cache block in the big-M loop: 48 rows of W (96 KiB of bf16 at
// K = 1024) are reused from L2 by every row tile.
constexpr int64_t kBigNBlock = 48;

template <class T, int W>
inline typename T::Vec LoadW(const void* w, int64_t off) {
  if constexpr (W == kWF32) {
    return T::Load(static_cast<const float*>(w) + off);
  } else if constexpr (W == kWF16) {
    return T::LoadF16(static_cast<const uint16_t*>(w) + off);
  } else {
    return T::LoadBf16(static_cast<const uint16_t*>(w) + off);
  }
}

template <class T, int W>
inline typename T::Vec LoadWMasked(const void* w, int64_t off, typename T::Mask mask) {
  if constexpr (W == kWF32) {
    return T::LoadMasked(static_cast<const float*>(w) + off, mask);
  } else if constexpr (W == kWF16) {
    return T::LoadF16Masked(static_cast<const uint16_t*>(w) + off, mask);
  } else {
    return T::LoadBf16Masked(static_cast<const uint16_t*>(w) + off, mask);
  }
}

inline void StoreOutput(const GemmArgs& a, int64_t m, int64_t n, float dot) {
  if (a.bias != nullptr) dot += a.bias[n];
  float* y = a.y + m * a.ldy + n;
  *y = a.accumulate ? *y + dot : dot;
}

// y[m0 : m0+MR, n0 : n0+NR] for weights of type W (kWF32, kWF16, kWBF16 or
// kWBF16Dot).
template <class T, int W, int MR, int NR>
void Tile(const GemmArgs& a, int64_t m0, int64_t n0) {
  using Vec = typename T::Vec;
  using Pairs = typename T::Bf16Pairs;
  constexpr int L = T::kLanes;
  Vec acc[MR][NR];
  #pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
    #pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = T::Zero();
  const int64_t k = a.k;
  if constexpr (W == kWBF16Dot) {
    // x: [m, kpad] bf16, zero padded to a multiple of 32 >= 2 * kLanes, so
    // only the weights need a masked tail.
    static_assert(32 % (2 * L) == 0);
    const uint16_t* xr[MR];
    #pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) xr[i] = a.xb + (m0 + i) * a.ldxb;
    const uint16_t* wr[NR];
    #pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) wr[j] = static_cast<const uint16_t*>(a.w) + (n0 + j) * a.ldw;
    int64_t k0 = 0;
    for (; k0 + 2 * L <= k; k0 += 2 * L) {
      Pairs xv[MR];
      #pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) xv[i] = T::LoadPairs(xr[i] + k0);
      #pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) {
        const Pairs wv = T::LoadPairs(wr[j] + k0);
        #pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) acc[i][j] = T::DotBf16(acc[i][j], xv[i], wv);
      }
    }
    if (k0 < k) {
      const typename T::PairsMask mask = T::PairsTailMask(k - k0);
      Pairs xv[MR];
      #pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) xv[i] = T::LoadPairs(xr[i] + k0);  // zero padded
      #pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) {
        const Pairs wv = T::LoadPairsMasked(wr[j] + k0, mask);
        #pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) acc[i][j] = T::DotBf16(acc[i][j], xv[i], wv);
      }
    }
  } else if constexpr (W == kWBF16 && T::kSplitBf16) {
    // 2 * kLanes bf16 weights per step: the low halves of the 32-bit lanes
    // are the even k, the high halves the odd k; x comes pre-split the same
    // way (xd, zero padded to whole steps). The tail stays inside the loop
    // as in the hand-written version this replaced: with a separate tail,
    // GCC folded the M = 1 tile's weight load into both the shift and the
    // AND (each 64 bytes loaded twice per step).
    const float* xr[MR];
    #pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) xr[i] = a.xd + (m0 + i) * a.ldxd;
    const uint16_t* wr[NR];
    #pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) wr[j] = static_cast<const uint16_t*>(a.w) + (n0 + j) * a.ldw;
    for (int64_t k0 = 0; k0 < k; k0 += 2 * L) {
      const bool tail = k - k0 < 2 * L;
      const typename T::PairsMask mask =
          tail ? T::PairsTailMask(k - k0) : T::PairsTailMask(2 * L);
      #pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) {
        const Pairs wv = tail ? T::LoadPairsMasked(wr[j] + k0, mask) : T::LoadPairs(wr[j] + k0);
        const Vec w_even = T::Even(wv);
        const Vec w_odd = T::Odd(wv);
        #pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) {
          acc[i][j] = T::Fmadd(T::Load(xr[i] + k0), w_even, acc[i][j]);
          acc[i][j] = T::Fmadd(T::Load(xr[i] + k0 + L), w_odd, acc[i][j]);
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
    for (; k0 + L <= k; k0 += L) {
      Vec xv[MR];
      #pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) xv[i] = T::Load(xr[i] + k0);
      #pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) {
        const Vec wv = LoadW<T, W>(a.w, wr[j] + k0);
        #pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) acc[i][j] = T::Fmadd(xv[i], wv, acc[i][j]);
      }
    }
    if (k0 < k) {
      const typename T::Mask mask = T::TailMask(k - k0);
      Vec xv[MR];
      #pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) xv[i] = T::LoadMasked(xr[i] + k0, mask);
      #pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) {
        const Vec wv = LoadWMasked<T, W>(a.w, wr[j] + k0, mask);
        #pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) acc[i][j] = T::Fmadd(xv[i], wv, acc[i][j]);
      }
    }
  }
  #pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
    #pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) StoreOutput(a, m0 + i, n0 + j, T::ReduceAdd(acc[i][j]));
}

// y[m0 : m0+MR, n0 : n0+NR] for int8 weights (kWI8) and the per-row int8
// activations a.xq: exact int32 dot products (the traits' DotI8), then
// y = x_scale[m] * w_scale[n] * acc in F32. The integer part is exact, so
// every variant gets the same acc; the same float epilogue follows.
template <class T, int MR, int NR>
void TileI8(const GemmArgs& a, int64_t m0, int64_t n0) {
  using I8Vec = typename T::I8Vec;
  constexpr int S = T::kI8Step;
  static_assert(kI8Pad % S == 0);
  typename T::I32Acc acc[MR][NR];
  #pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
    #pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = T::ZeroI32();
  const int8_t* xr[MR];
  #pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) xr[i] = a.xq + (m0 + i) * a.ldxq;
  const int8_t* wr[NR];
  #pragma GCC unroll 8
  for (int j = 0; j < NR; ++j) wr[j] = static_cast<const int8_t*>(a.w) + (n0 + j) * a.ldw;
  const int64_t k = a.k;
  int64_t k0 = 0;
  for (; k0 + S <= k; k0 += S) {
    I8Vec xv[MR];
    #pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) xv[i] = T::LoadI8(xr[i] + k0);
    #pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) {
      const I8Vec wv = T::PrepareI8W(T::LoadI8(wr[j] + k0));
      #pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) acc[i][j] = T::DotI8(acc[i][j], xv[i], wv);
    }
  }
  if (k0 < k) {
    // x is zero padded, so a padded weight lane (w + 128 after PrepareI8W)
    // adds nothing.
    I8Vec xv[MR];
    #pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) xv[i] = T::LoadI8(xr[i] + k0);
    #pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) {
      const I8Vec wv = T::PrepareI8W(T::LoadI8Tail(wr[j] + k0, k - k0));
      #pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) acc[i][j] = T::DotI8(acc[i][j], xv[i], wv);
    }
  }
  #pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    const int64_t m = m0 + i;
    #pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) {
      const int64_t n = n0 + j;
      const int32_t dot = T::ReduceAddI32(acc[i][j]) - T::kI8WeightBias * a.x_sum[m];
      StoreOutput(a, m, n, static_cast<float>(dot) * (a.x_scale[m] * a.w_scale[n]));
    }
  }
}

using TileFn = void (*)(const GemmArgs&, int64_t, int64_t);

template <class T>
constexpr int kTileRows = T::kMaxSmallM > T::kBigMR ? T::kMaxSmallM : T::kBigMR;
template <class T>
constexpr int kTileCols = T::kSmallNR > T::kBigNR ? T::kSmallNR : T::kBigNR;

// Tile<T, W, MR, NR> for MR in [1, kTileRows], NR in [1, kTileCols]
// (AVX-512: 4 x 6, AVX2: 4 x 4, scalar: 1 x 1): the explicit list of
// instantiations, indexed [MR - 1][NR - 1].
template <class T, int W>
struct TileTable {
  TileFn f[kTileRows<T>][kTileCols<T>];
};

template <class T, int W, int MR, int NR>
constexpr void FillTiles(TileTable<T, W>& t) {
  if constexpr (W == kWI8) {
    t.f[MR - 1][NR - 1] = &TileI8<T, MR, NR>;
  } else {
    t.f[MR - 1][NR - 1] = &Tile<T, W, MR, NR>;
  }
  if constexpr (NR > 1) {
    FillTiles<T, W, MR, NR - 1>(t);
  } else if constexpr (MR > 1) {
    FillTiles<T, W, MR - 1, kTileCols<T>>(t);
  }
}

template <class T, int W>
constexpr TileTable<T, W> MakeTileTable() {
  TileTable<T, W> t{};
  FillTiles<T, W, kTileRows<T>, kTileCols<T>>(t);
  return t;
}

template <class T, int W>
void Range(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  static constexpr TileTable<T, W> kTiles = MakeTileTable<T, W>();
  constexpr int kSmallNR = T::kSmallNR, kBigMR = T::kBigMR, kBigNR = T::kBigNR;
  if (a.m <= T::kMaxSmallM) {
    const TileFn* row = kTiles.f[a.m - 1];
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
      const TileFn* row = kTiles.f[mr - 1];
      for (int64_t n0 = nb; n0 < ne; n0 += kBigNR) {
        const int64_t nr = ne - n0 < kBigNR ? ne - n0 : kBigNR;
        row[nr - 1](a, m0, n0);
      }
    }
  }
}

template <class T>
void GemmRange(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  if (a.bf16_dot) {
    Range<T, kWBF16Dot>(a, n_begin, n_end);
    return;
  }
  switch (a.w_type) {
    case kWF32: Range<T, kWF32>(a, n_begin, n_end); return;
    case kWF16: Range<T, kWF16>(a, n_begin, n_end); return;
    case kWBF16: Range<T, kWBF16>(a, n_begin, n_end); return;
    case kWI8: Range<T, kWI8>(a, n_begin, n_end); return;
    default: __builtin_trap();  // gemm.cc validated the dtype
  }
}

// x [m, k] (row stride ldx) -> out [m, kpad] bf16, round to nearest even,
// zero padding from k to kpad. REQUIRES: kpad a multiple of kLanes, >= k.
template <class T>
void ConvertToBf16(const float* x, int64_t ldx, int64_t m, int64_t k, uint16_t* out,
                   int64_t kpad) {
  for (int64_t i = 0; i < m; ++i) {
    const float* xr = x + i * ldx;
    uint16_t* o = out + i * kpad;
    for (int64_t k0 = 0; k0 < kpad; k0 += T::kLanes) {
      const int64_t left = k - k0;
      const typename T::Mask mask =
          T::TailMask(left >= T::kLanes ? T::kLanes : left <= 0 ? 0 : left);
      T::StoreBf16(o + k0, T::LoadMasked(xr + k0, mask));
    }
  }
}

// Per-row symmetric int8 quantization of x (see QuantizeI8Scalar in
// isa_kernels.h). REQUIRES: kpad a multiple of kLanes, >= k; k <= 65536.
template <class T>
void QuantizeI8(const float* x, int64_t ldx, int64_t m, int64_t k, int8_t* out, int64_t kpad,
                float* scale, int32_t* sum) {
  using Vec = typename T::Vec;
  constexpr int L = T::kLanes;
  for (int64_t i = 0; i < m; ++i) {
    const float* xr = x + i * ldx;
    int8_t* o = out + i * kpad;
    Vec vmax = T::Zero();
    int64_t k0 = 0;
    for (; k0 + L <= k; k0 += L) vmax = T::Max(vmax, T::Abs(T::Load(xr + k0)));
    if (k0 < k) vmax = T::Max(vmax, T::Abs(T::LoadMasked(xr + k0, T::TailMask(k - k0))));
    const float amax = T::ReduceMaxMasked(vmax, T::TailMask(L));
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    scale[i] = amax / 127.0f;
    const Vec vinv = T::Set1(inv);
    // Sum of the rounded values: integers below 2^24 in every partial sum,
    // so exact in F32 for k <= 65536.
    Vec vsum = T::Zero();
    for (k0 = 0; k0 < kpad; k0 += L) {
      const int64_t left = k - k0;
      const typename T::Mask mask = T::TailMask(left >= L ? L : left <= 0 ? 0 : left);
      const Vec q = T::Mul(T::LoadMasked(xr + k0, mask), vinv);
      T::StoreI8(o + k0, q);
      vsum = T::Add(vsum, T::Round(q));
    }
    sum[i] = static_cast<int32_t>(T::ReduceAdd(vsum));
  }
}

}  // namespace
}  // namespace kestrel::kernels::cpu::isa

#endif  // KESTREL_KERNELS_CPU_ISA_GEMM_IMPL_H_
