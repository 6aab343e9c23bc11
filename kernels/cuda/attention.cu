// Paged attention kernels (see attention.h for the split between decode and
// prefill). Design notes:
// - The cache is read only through the block table and only at slots a
//   query may see (causal, sliding window, < context_len); unused slots may
//   hold NaN. A bad block id is reported and its keys are masked out.
// - Head dims are rounded up to a compile-time kD in {64, 128, 256, 512}
//   (register arrays and shared tiles are sized by it; loops stop at the
//   runtime head_dim). The element type is float or uint16_t (BF16 bits,
//   widened exactly by a shift).
// - Keys go in tiles of 32, one per lane, aligned to absolute positions
//   (multiples of 32), so a tile covers whole runs of a block for block
//   sizes 16/32. Per tile, each query row's online-softmax statistics are
//   computed by a few lanes each (lane = (row, sub)), so a tile costs a
//   handful of warp shuffles rather than five per row.
// - Decode: 4 warps of a block walk alternate key tiles of the partition
//   (no block barrier in the loop), each keeping (m, l, acc) for up to kHc
//   query heads of the GQA group; the warps merge through shared memory at
//   the end. Lanes own keys for Q.K (K columns are contiguous per element)
//   and 4 consecutive dims for P.V (16-byte V loads).
// - Prefill: a block owns kRows = 4096 / kD query rows ((token, head) pairs
//   of one sequence and kv head); K and V tiles are staged in shared memory
//   (K as [kD][32], V as [32][kD], both bank-conflict free for their
//   readers); warp w owns rows [w * kRows / 4, (w + 1) * kRows / 4).
#include "kernels/cuda/attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/cuda/cuda_compat.h"
#include "kernels/cuda/device_error.h"

// `#pragma unroll` for nvcc; g++ (the emulated build, -Werror) does not know it.
#if defined(__CUDACC__)
#define KESTREL_ATTN_UNROLL _Pragma("unroll")
#else
#define KESTREL_ATTN_UNROLL
#endif

namespace kestrel::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kWarpSize = 32;
constexpr int kWarps = kThreads / kWarpSize;
constexpr int kKeyTile = 32;          // keys per tile: one per lane
constexpr int kScoreStride = kKeyTile + 1;  // padded rows of score tiles
constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kMaxHeadDim = 512;
constexpr int kMaxBlockSize = 256;
// Decode split-K: partitions are at least this long when picked
// automatically, and enough of them to give every SM this many blocks.
constexpr int kMinPartitionTokens = 512;
constexpr int kTargetBlocksPerSm = 4;
// The reduce kernel keeps one weight per partition in shared memory.
constexpr int kMaxPartitions = 4096;

// Everything the kernels read, passed by value.
struct Args {
  const float* q;
  int64_t q_stride;
  float* out;
  int64_t out_stride;
  const void* k_cache;
  const void* v_cache;
  int64_t num_blocks;
  int block_size;
  const int32_t* query_start;
  const int32_t* context_lens;
  const int32_t* block_tables;
  int64_t block_table_stride;
  int num_heads;
  int num_kv_heads;
  int head_dim;
  int group;  // num_heads / num_kv_heads
  float scale;
  int sliding_window;  // 0: unlimited (also when >= max_context_len)
  int max_query_len;
  int max_context_len;
  bool vec_rows;  // V rows (and K runs) may be read 4 elements at a time
  bool vec_keys;  // K runs of 4 keys may be read at once (block_size % 4 == 0)
  // Decode split-K.
  int head_chunks;      // blocks per kv head (groups of kHc query heads)
  int partition_tokens; // a multiple of kKeyTile
  int num_partitions;   // 1: write out directly
  float* ws_out;        // [num_seqs, num_heads, num_partitions, head_dim]
  float* ws_max;        // [num_seqs, num_heads, num_partitions]
  float* ws_sum;        // [num_seqs, num_heads, num_partitions]
  DeviceError* error;
};

__device__ __forceinline__ float Widen(float x) { return x; }
__device__ __forceinline__ float Widen(uint16_t x) {
  return __uint_as_float(static_cast<unsigned>(x) << 16);
}

// Elements [i0, i0 + 4) of a row (zeros past `limit`); one 16-byte (F32)
// or 8-byte (BF16) load when `vec` (i0 % 4 == 0, row aligned, in bounds).
__device__ __forceinline__ float4 Load4(const float* row, int i0, int limit, bool vec) {
  if (vec && i0 + 4 <= limit) return *reinterpret_cast<const float4*>(row + i0);
  float4 r;
  r.x = i0 + 0 < limit ? row[i0 + 0] : 0.0f;
  r.y = i0 + 1 < limit ? row[i0 + 1] : 0.0f;
  r.z = i0 + 2 < limit ? row[i0 + 2] : 0.0f;
  r.w = i0 + 3 < limit ? row[i0 + 3] : 0.0f;
  return r;
}
__device__ __forceinline__ float4 Load4(const uint16_t* row, int i0, int limit, bool vec) {
  float4 r;
  if (vec && i0 + 4 <= limit) {
    const uint2 u = *reinterpret_cast<const uint2*>(row + i0);
    r.x = __uint_as_float(u.x << 16);
    r.y = __uint_as_float(u.x & 0xffff0000u);
    r.z = __uint_as_float(u.y << 16);
    r.w = __uint_as_float(u.y & 0xffff0000u);
    return r;
  }
  r.x = i0 + 0 < limit ? Widen(row[i0 + 0]) : 0.0f;
  r.y = i0 + 1 < limit ? Widen(row[i0 + 1]) : 0.0f;
  r.z = i0 + 2 < limit ? Widen(row[i0 + 2]) : 0.0f;
  r.w = i0 + 3 < limit ? Widen(row[i0 + 3]) : 0.0f;
  return r;
}

// One sequence's step, checked against the host's bounds.
struct Seq {
  int token0;  // first row of q/out
  int n_new;
  int ctx;
  bool ok;
};

__device__ __forceinline__ Seq LoadSeq(const Args& a, int s) {
  Seq seq;
  seq.token0 = a.query_start[s];
  seq.n_new = a.query_start[s + 1] - seq.token0;
  seq.ctx = a.context_lens[s];
  seq.ok = seq.n_new >= 0 && seq.n_new <= a.max_query_len && seq.ctx >= seq.n_new &&
           seq.ctx <= a.max_context_len;
  return seq;
}

// Lowest key any of the sequence's rows from position `pos` on may see.
__device__ __forceinline__ int LowestKey(const Args& a, int pos) {
  return a.sliding_window > 0 ? (pos - a.sliding_window + 1 > 0 ? pos - a.sliding_window + 1 : 0)
                              : 0;
}

// The physical block holding key `pos` of sequence s, or -1 (reported) when
// the table entry is outside the pool.
__device__ __forceinline__ int PhysicalBlock(const Args& a, int s, int pos) {
  const int64_t entry = static_cast<int64_t>(s) * a.block_table_stride + pos / a.block_size;
  const int32_t id = a.block_tables[entry];
  if (id < 0 || id >= a.num_blocks) {
    ReportDeviceError(a.error, DeviceErrorCode::kBlockId, entry, id, a.num_blocks);
    return -1;
  }
  return id;
}

// Offset of (block, kv head)'s K tile [head_dim, block_size] or V tile
// [block_size, head_dim]: both are head_dim * block_size elements.
__device__ __forceinline__ int64_t HeadTile(const Args& a, int block, int kv_head) {
  return (static_cast<int64_t>(block) * a.num_kv_heads + kv_head) * a.head_dim * a.block_size;
}

// Query heads per decode block for a head-dim bucket: keeps the P.V
// accumulators at 32 registers per lane.
template <int kD>
constexpr int kDecodeHeads = kD <= 128 ? 8 : 1024 / kD;

// grid (num_seqs, num_kv_heads * head_chunks, num_partitions), kThreads.
template <typename T, int kD>
__global__ void __launch_bounds__(kThreads) DecodeKernel(const Args a) {
  constexpr int kHc = kDecodeHeads<kD>;
  constexpr int kDimChunks = (kD + 4 * kWarpSize - 1) / (4 * kWarpSize);  // float4 per lane
  __shared__ float4 q_s[kHc][kD / 4];                   // scaled queries, zero padded
  __shared__ float p_s[kWarps][kHc][kScoreStride];      // scores, then probabilities
  __shared__ int blk_s[kWarps][kKeyTile];               // physical block per key, -1: skip
  __shared__ float alpha_s[kWarps][kHc];
  __shared__ float max_s[kWarps][kHc];
  __shared__ float sum_s[kWarps][kHc];
  __shared__ float4 acc_s[kWarps][kHc][kD / 4];

  const int s = blockIdx.x;
  const int kv_head = blockIdx.y / a.head_chunks;
  const int g0 = (blockIdx.y % a.head_chunks) * kHc;  // first head of the group
  const int part = blockIdx.z;
  const Seq seq = LoadSeq(a, s);
  if (!seq.ok) {
    if (threadIdx.x == 0 && blockIdx.y == 0 && part == 0) {
      ReportDeviceError(a.error, DeviceErrorCode::kBlockId, s, seq.ctx, a.max_context_len);
    }
    return;
  }
  if (seq.n_new == 0) return;
  const int d = a.head_dim;
  const int lo = LowestKey(a, seq.ctx - 1);
  const int part_lo = (lo & ~(kKeyTile - 1)) + part * a.partition_tokens;
  if (part_lo >= seq.ctx) return;  // the whole block: this sequence is shorter
  const int part_hi =
      seq.ctx - part_lo < a.partition_tokens ? seq.ctx : part_lo + a.partition_tokens;
  const int ng = a.group - g0 < kHc ? a.group - g0 : kHc;
  const int head0 = kv_head * a.group + g0;

  float* q_flat = reinterpret_cast<float*>(q_s);
  const float* q_row = a.q + static_cast<int64_t>(seq.token0) * a.q_stride +
                       static_cast<int64_t>(head0) * d;
  for (int e = threadIdx.x; e < kHc * kD; e += kThreads) {
    const int g = e / kD, i = e % kD;
    q_flat[e] = g < ng && i < d ? q_row[static_cast<int64_t>(g) * d + i] * a.scale : 0.0f;
  }
  __syncthreads();

  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  // Softmax statistics: lane (row_g, sub) owns head row_g's keys
  // [sub * kHc, (sub + 1) * kHc) of each tile; all its sub-lanes agree.
  const int row_g = lane % kHc;
  const int sub = lane / kHc;
  float row_max = -INFINITY, row_sum = 0.0f;
  float4 acc[kHc][kDimChunks];
KESTREL_ATTN_UNROLL
  for (int g = 0; g < kHc; ++g) {
KESTREL_ATTN_UNROLL
    for (int c = 0; c < kDimChunks; ++c) acc[g][c] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  }
  const T* k_cache = static_cast<const T*>(a.k_cache);
  const T* v_cache = static_cast<const T*>(a.v_cache);

  for (int tile = part_lo + warp * kKeyTile; tile < part_hi; tile += kWarps * kKeyTile) {
    // Q.K: lane = key.
    const int pos = tile + lane;
    const int block = pos >= lo && pos < part_hi ? PhysicalBlock(a, s, pos) : -1;
    float score[kHc];
KESTREL_ATTN_UNROLL
    for (int g = 0; g < kHc; ++g) score[g] = 0.0f;
    if (block >= 0) {
      const T* kp = k_cache + HeadTile(a, block, kv_head) + pos % a.block_size;
      const int64_t bs = a.block_size;
      int i = 0;
      for (; i + 4 <= d; i += 4) {
        const float k0 = Widen(kp[(i + 0) * bs]), k1 = Widen(kp[(i + 1) * bs]);
        const float k2 = Widen(kp[(i + 2) * bs]), k3 = Widen(kp[(i + 3) * bs]);
KESTREL_ATTN_UNROLL
        for (int g = 0; g < kHc; ++g) {
          const float4 qv = q_s[g][i / 4];
          score[g] += qv.x * k0 + qv.y * k1 + qv.z * k2 + qv.w * k3;
        }
      }
      for (; i < d; ++i) {
        const float kv = Widen(kp[i * bs]);
KESTREL_ATTN_UNROLL
        for (int g = 0; g < kHc; ++g) score[g] += q_flat[g * kD + i] * kv;
      }
    }
KESTREL_ATTN_UNROLL
    for (int g = 0; g < kHc; ++g) p_s[warp][g][lane] = block >= 0 ? score[g] : -INFINITY;
    blk_s[warp][lane] = block;
    __syncwarp(kFullMask);

    // Online softmax step for head row_g over this tile.
    float* prow = p_s[warp][row_g];
    float tile_max = -INFINITY;
KESTREL_ATTN_UNROLL
    for (int u = 0; u < kHc; ++u) tile_max = fmaxf(tile_max, prow[sub * kHc + u]);
KESTREL_ATTN_UNROLL
    for (int offset = kHc; offset < kWarpSize; offset *= 2) {
      tile_max = fmaxf(tile_max, __shfl_xor_sync(kFullMask, tile_max, offset));
    }
    const float new_max = fmaxf(row_max, tile_max);
    const float alpha = new_max == -INFINITY ? 1.0f : expf(row_max - new_max);
    float tile_sum = 0.0f;
KESTREL_ATTN_UNROLL
    for (int u = 0; u < kHc; ++u) {
      const float x = prow[sub * kHc + u];
      const float prob = x == -INFINITY ? 0.0f : expf(x - new_max);
      prow[sub * kHc + u] = prob;
      tile_sum += prob;
    }
KESTREL_ATTN_UNROLL
    for (int offset = kHc; offset < kWarpSize; offset *= 2) {
      tile_sum += __shfl_xor_sync(kFullMask, tile_sum, offset);
    }
    row_sum = row_sum * alpha + tile_sum;
    row_max = new_max;
    if (sub == 0) alpha_s[warp][row_g] = alpha;
    __syncwarp(kFullMask);

    // P.V: lane = 4 consecutive dims (+ 128 per chunk).
KESTREL_ATTN_UNROLL
    for (int g = 0; g < kHc; ++g) {
      const float al = alpha_s[warp][g];
KESTREL_ATTN_UNROLL
      for (int c = 0; c < kDimChunks; ++c) {
        acc[g][c].x *= al;
        acc[g][c].y *= al;
        acc[g][c].z *= al;
        acc[g][c].w *= al;
      }
    }
    for (int t = 0; t < kKeyTile; ++t) {
      const int b = blk_s[warp][t];
      if (b < 0) continue;  // the same for every lane
      const T* vrow = v_cache + HeadTile(a, b, kv_head) +
                      static_cast<int64_t>((tile + t) % a.block_size) * d;
KESTREL_ATTN_UNROLL
      for (int c = 0; c < kDimChunks; ++c) {
        const int i0 = 4 * (lane + kWarpSize * c);
        if (i0 >= d) continue;
        const float4 v = Load4(vrow, i0, d, a.vec_rows);
KESTREL_ATTN_UNROLL
        for (int g = 0; g < kHc; ++g) {
          const float prob = p_s[warp][g][t];
          acc[g][c].x += prob * v.x;
          acc[g][c].y += prob * v.y;
          acc[g][c].z += prob * v.z;
          acc[g][c].w += prob * v.w;
        }
      }
    }
    __syncwarp(kFullMask);  // p_s and blk_s are rewritten by the next tile
  }

  // Merge the warps' states.
  if (sub == 0) {
    max_s[warp][row_g] = row_max;
    sum_s[warp][row_g] = row_sum;
  }
KESTREL_ATTN_UNROLL
  for (int g = 0; g < kHc; ++g) {
KESTREL_ATTN_UNROLL
    for (int c = 0; c < kDimChunks; ++c) {
      const int chunk = lane + kWarpSize * c;
      if (chunk < kD / 4) acc_s[warp][g][chunk] = acc[g][c];
    }
  }
  __syncthreads();
  for (int e = threadIdx.x; e < ng * d; e += kThreads) {
    const int g = e / d, i = e % d;
    float m = -INFINITY;
    for (int w = 0; w < kWarps; ++w) m = fmaxf(m, max_s[w][g]);
    float total = 0.0f, o = 0.0f;
    for (int w = 0; w < kWarps; ++w) {
      if (max_s[w][g] == -INFINITY) continue;
      const float f = expf(max_s[w][g] - m);
      total += sum_s[w][g] * f;
      o += reinterpret_cast<const float*>(acc_s[w][g])[i] * f;
    }
    const float result = total > 0.0f ? o * (1.0f / total) : 0.0f;
    if (a.num_partitions == 1) {
      a.out[static_cast<int64_t>(seq.token0) * a.out_stride + static_cast<int64_t>(head0 + g) * d +
            i] = result;
    } else {
      const int64_t slot =
          (static_cast<int64_t>(s) * a.num_heads + head0 + g) * a.num_partitions + part;
      a.ws_out[slot * d + i] = result;
      if (i == 0) {
        a.ws_max[slot] = m;
        a.ws_sum[slot] = total;
      }
    }
  }
}

// Block-wide reductions for kThreads threads; every thread gets the result.
__device__ __forceinline__ float BlockMax(float x, float* scratch) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    x = fmaxf(x, __shfl_xor_sync(kFullMask, x, offset));
  }
  if (threadIdx.x % kWarpSize == 0) scratch[threadIdx.x / kWarpSize] = x;
  __syncthreads();
  float r = scratch[0];
  for (int w = 1; w < kWarps; ++w) r = fmaxf(r, scratch[w]);
  __syncthreads();  // scratch is reused
  return r;
}

__device__ __forceinline__ float BlockSum(float x, float* scratch) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    x += __shfl_xor_sync(kFullMask, x, offset);
  }
  if (threadIdx.x % kWarpSize == 0) scratch[threadIdx.x / kWarpSize] = x;
  __syncthreads();
  float r = 0.0f;
  for (int w = 0; w < kWarps; ++w) r += scratch[w];
  __syncthreads();
  return r;
}

// Merges the decode partitions of one (sequence, head): grid (num_seqs,
// num_heads), kThreads, num_partitions + 4 floats of dynamic shared memory.
__global__ void __launch_bounds__(kThreads) ReduceKernel(const Args a) {
  KESTREL_DYNAMIC_SHARED(float, weight_s);
  __shared__ float scratch[kWarps];
  const int s = blockIdx.x;
  const int head = blockIdx.y;
  const Seq seq = LoadSeq(a, s);
  if (!seq.ok || seq.n_new == 0) return;  // reported by DecodeKernel
  const int base = LowestKey(a, seq.ctx - 1) & ~(kKeyTile - 1);
  int n = (seq.ctx - base + a.partition_tokens - 1) / a.partition_tokens;
  if (n > a.num_partitions) n = a.num_partitions;  // cannot happen when seq.ok
  const int64_t slot0 = (static_cast<int64_t>(s) * a.num_heads + head) * a.num_partitions;

  float m = -INFINITY;
  for (int p = threadIdx.x; p < n; p += kThreads) m = fmaxf(m, a.ws_max[slot0 + p]);
  m = BlockMax(m, scratch);
  float total = 0.0f;
  for (int p = threadIdx.x; p < n; p += kThreads) {
    const float pm = a.ws_max[slot0 + p];
    const float w = pm == -INFINITY ? 0.0f : a.ws_sum[slot0 + p] * expf(pm - m);
    weight_s[p] = w;
    total += w;
  }
  total = BlockSum(total, scratch);  // its barrier also publishes weight_s
  const float inv = total > 0.0f ? 1.0f / total : 0.0f;
  const int d = a.head_dim;
  float* out = a.out + static_cast<int64_t>(seq.token0) * a.out_stride +
               static_cast<int64_t>(head) * d;
  for (int i = threadIdx.x; i < d; i += kThreads) {
    float o = 0.0f;
    for (int p = 0; p < n; ++p) {
      if (weight_s[p] != 0.0f) o += weight_s[p] * a.ws_out[(slot0 + p) * d + i];
    }
    out[i] = o * inv;
  }
}

// Query rows per prefill block for a head-dim bucket (32 accumulators per
// lane).
template <int kD>
constexpr int kPrefillRows = 4096 / kD;

template <int kD>
constexpr size_t PrefillSmemBytes() {
  constexpr int kRows = kPrefillRows<kD>;
  return sizeof(float) *
         (static_cast<size_t>(kRows) * kD + 2 * kD * kKeyTile + kRows * kScoreStride);
}

// grid (row tiles, num_kv_heads, num_seqs), kThreads,
// PrefillSmemBytes<kD>() of dynamic shared memory.
template <typename T, int kD>
__global__ void __launch_bounds__(kThreads) PrefillKernel(const Args a) {
  constexpr int kRows = kPrefillRows<kD>;
  constexpr int kRowsPerWarp = kRows / kWarps;
  constexpr int kDimsPerLane = kD / kWarpSize;
  KESTREL_DYNAMIC_SHARED(float, smem);
  float* q_s = smem;                          // [kRows][kD], scaled, zero padded
  float* k_s = q_s + kRows * kD;              // [kD][kKeyTile] (rows < head_dim used)
  float* v_s = k_s + kD * kKeyTile;           // [kKeyTile][kD], zero padded
  float* p_s = v_s + kKeyTile * kD;           // [kRows][kScoreStride]
  __shared__ int blk_s[kKeyTile];
  __shared__ float alpha_s[kRows];
  __shared__ float sum_s[kRows];

  const int tile_index = blockIdx.x;
  const int kv_head = blockIdx.y;
  const int s = blockIdx.z;
  const Seq seq = LoadSeq(a, s);
  if (!seq.ok) {
    if (threadIdx.x == 0 && tile_index == 0 && kv_head == 0) {
      ReportDeviceError(a.error, DeviceErrorCode::kBlockId, s, seq.ctx, a.max_context_len);
    }
    return;
  }
  const int g = a.group;
  const int n_rows = seq.n_new * g;
  const int row0 = tile_index * kRows;
  if (row0 >= n_rows) return;  // the whole block
  const int rows_here = n_rows - row0 < kRows ? n_rows - row0 : kRows;
  const int d = a.head_dim;
  const int first_pos = seq.ctx - seq.n_new;
  const int hi = first_pos + (row0 + rows_here - 1) / g;  // last key any row sees
  const int lo = LowestKey(a, first_pos + row0 / g);

  for (int e = threadIdx.x; e < kRows * kD; e += kThreads) {
    const int r = e / kD, i = e % kD;
    float v = 0.0f;
    if (r < rows_here && i < d) {
      const int row = row0 + r;
      v = a.q[static_cast<int64_t>(seq.token0 + row / g) * a.q_stride +
              static_cast<int64_t>(kv_head * g + row % g) * d + i] *
          a.scale;
    }
    q_s[e] = v;
  }

  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  const int warp_row0 = warp * kRowsPerWarp;
  // Statistics lane (stat_row, sub) owns keys [sub * kRowsPerWarp, +kRowsPerWarp)
  // of row warp_row0 + stat_row; its sub-lanes agree on row_max, row_sum.
  const int stat_row = lane % kRowsPerWarp;
  const int sub = lane / kRowsPerWarp;
  float row_max = -INFINITY, row_sum = 0.0f;
  // Positions of this warp's rows (for the mask); rows past rows_here see nothing.
  int row_pos[kRowsPerWarp];
KESTREL_ATTN_UNROLL
  for (int k = 0; k < kRowsPerWarp; ++k) {
    const int r = warp_row0 + k;
    row_pos[k] = r < rows_here ? first_pos + (row0 + r) / g : -1;
  }
  float acc[kRowsPerWarp][kDimsPerLane];
KESTREL_ATTN_UNROLL
  for (int k = 0; k < kRowsPerWarp; ++k) {
KESTREL_ATTN_UNROLL
    for (int j = 0; j < kDimsPerLane; ++j) acc[k][j] = 0.0f;
  }
  const T* k_cache = static_cast<const T*>(a.k_cache);
  const T* v_cache = static_cast<const T*>(a.v_cache);
  const int bs = a.block_size;

  for (int k0 = lo & ~(kKeyTile - 1); k0 <= hi; k0 += kKeyTile) {
    if (threadIdx.x < kKeyTile) {
      const int pos = k0 + threadIdx.x;
      blk_s[threadIdx.x] = pos >= lo && pos <= hi ? PhysicalBlock(a, s, pos) : -1;
    }
    __syncthreads();  // blk_s ready; the previous tile's readers are done (below)

    // Stage K as [d][32]: 4 keys at a time where they share a block.
    for (int e = threadIdx.x; e < d * (kKeyTile / 4); e += kThreads) {
      const int i = e / (kKeyTile / 4);
      const int t0 = (e % (kKeyTile / 4)) * 4;
      const int b0 = blk_s[t0];
      float4 kv;
      if (a.vec_keys && b0 >= 0 && blk_s[t0 + 3] >= 0) {
        // block_size % 4 == 0 and k0 % 32 == 0: the 4 keys are one run.
        const T* kp = k_cache + HeadTile(a, b0, kv_head) + static_cast<int64_t>(i) * bs +
                      (k0 + t0) % bs;
        kv = Load4(kp, 0, 4, true);
      } else {
        float x[4];
KESTREL_ATTN_UNROLL
        for (int c = 0; c < 4; ++c) {
          const int b = blk_s[t0 + c];
          x[c] = b >= 0 ? Widen(k_cache[HeadTile(a, b, kv_head) + static_cast<int64_t>(i) * bs +
                                        (k0 + t0 + c) % bs])
                        : 0.0f;
        }
        kv = make_float4(x[0], x[1], x[2], x[3]);
      }
      *reinterpret_cast<float4*>(k_s + i * kKeyTile + t0) = kv;
    }
    // Stage V as [32][kD], zeros past head_dim and for skipped keys.
    for (int e = threadIdx.x; e < kKeyTile * (kD / 4); e += kThreads) {
      const int t = e / (kD / 4);
      const int i0 = (e % (kD / 4)) * 4;
      const int b = blk_s[t];
      float4 vv = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      if (b >= 0 && i0 < d) {
        const T* vrow =
            v_cache + HeadTile(a, b, kv_head) + static_cast<int64_t>((k0 + t) % bs) * d;
        vv = Load4(vrow, i0, d, a.vec_rows);
      }
      *reinterpret_cast<float4*>(v_s + t * kD + i0) = vv;
    }
    __syncthreads();

    // Q.K: lane = key, for this warp's rows.
    float score[kRowsPerWarp];
KESTREL_ATTN_UNROLL
    for (int k = 0; k < kRowsPerWarp; ++k) score[k] = 0.0f;
    {
      int i = 0;
      for (; i + 4 <= d; i += 4) {
        const float c0 = k_s[(i + 0) * kKeyTile + lane], c1 = k_s[(i + 1) * kKeyTile + lane];
        const float c2 = k_s[(i + 2) * kKeyTile + lane], c3 = k_s[(i + 3) * kKeyTile + lane];
KESTREL_ATTN_UNROLL
        for (int k = 0; k < kRowsPerWarp; ++k) {
          const float4 qv = *reinterpret_cast<const float4*>(q_s + (warp_row0 + k) * kD + i);
          score[k] += qv.x * c0 + qv.y * c1 + qv.z * c2 + qv.w * c3;
        }
      }
      for (; i < d; ++i) {
        const float c = k_s[i * kKeyTile + lane];
KESTREL_ATTN_UNROLL
        for (int k = 0; k < kRowsPerWarp; ++k) score[k] += q_s[(warp_row0 + k) * kD + i] * c;
      }
    }
    const int key_pos = k0 + lane;
    const bool key_ok = blk_s[lane] >= 0;
KESTREL_ATTN_UNROLL
    for (int k = 0; k < kRowsPerWarp; ++k) {
      const bool visible = key_ok && key_pos <= row_pos[k] &&
                           (a.sliding_window == 0 || key_pos > row_pos[k] - a.sliding_window);
      p_s[(warp_row0 + k) * kScoreStride + lane] = visible ? score[k] : -INFINITY;
    }
    __syncwarp(kFullMask);

    // Online softmax step for row warp_row0 + stat_row.
    float* prow = p_s + (warp_row0 + stat_row) * kScoreStride + sub * kRowsPerWarp;
    float tile_max = -INFINITY;
KESTREL_ATTN_UNROLL
    for (int u = 0; u < kRowsPerWarp; ++u) tile_max = fmaxf(tile_max, prow[u]);
KESTREL_ATTN_UNROLL
    for (int offset = kRowsPerWarp; offset < kWarpSize; offset *= 2) {
      tile_max = fmaxf(tile_max, __shfl_xor_sync(kFullMask, tile_max, offset));
    }
    const float new_max = fmaxf(row_max, tile_max);
    const float alpha = new_max == -INFINITY ? 1.0f : expf(row_max - new_max);
    float tile_sum = 0.0f;
KESTREL_ATTN_UNROLL
    for (int u = 0; u < kRowsPerWarp; ++u) {
      const float x = prow[u];
      const float prob = x == -INFINITY ? 0.0f : expf(x - new_max);
      prow[u] = prob;
      tile_sum += prob;
    }
KESTREL_ATTN_UNROLL
    for (int offset = kRowsPerWarp; offset < kWarpSize; offset *= 2) {
      tile_sum += __shfl_xor_sync(kFullMask, tile_sum, offset);
    }
    row_sum = row_sum * alpha + tile_sum;
    row_max = new_max;
    if (sub == 0) alpha_s[warp_row0 + stat_row] = alpha;
    __syncwarp(kFullMask);

    // P.V: lane = dims lane + 32 j.
KESTREL_ATTN_UNROLL
    for (int k = 0; k < kRowsPerWarp; ++k) {
      const float al = alpha_s[warp_row0 + k];
KESTREL_ATTN_UNROLL
      for (int j = 0; j < kDimsPerLane; ++j) acc[k][j] *= al;
    }
    for (int t = 0; t < kKeyTile; ++t) {
      if (blk_s[t] < 0) continue;  // no row sees it (the same for every lane)
      float v[kDimsPerLane];
KESTREL_ATTN_UNROLL
      for (int j = 0; j < kDimsPerLane; ++j) v[j] = v_s[t * kD + lane + kWarpSize * j];
KESTREL_ATTN_UNROLL
      for (int k = 0; k < kRowsPerWarp; ++k) {
        const float prob = p_s[(warp_row0 + k) * kScoreStride + t];
KESTREL_ATTN_UNROLL
        for (int j = 0; j < kDimsPerLane; ++j) acc[k][j] += prob * v[j];
      }
    }
    __syncthreads();  // k_s, v_s, p_s, blk_s are rewritten by the next tile
  }

  if (sub == 0) sum_s[warp_row0 + stat_row] = row_sum;
  __syncwarp(kFullMask);
KESTREL_ATTN_UNROLL
  for (int k = 0; k < kRowsPerWarp; ++k) {
    const int r = warp_row0 + k;
    if (r >= rows_here) continue;
    const float total = sum_s[r];
    const float inv = total > 0.0f ? 1.0f / total : 0.0f;
    const int row = row0 + r;
    float* o = a.out + static_cast<int64_t>(seq.token0 + row / g) * a.out_stride +
               static_cast<int64_t>(kv_head * g + row % g) * d;
KESTREL_ATTN_UNROLL
    for (int j = 0; j < kDimsPerLane; ++j) {
      const int i = lane + kWarpSize * j;
      if (i < d) o[i] = acc[k][j] * inv;
    }
  }
}

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Query heads per decode block for a head dim (see DecodeHeads).
int DecodeHeadsFor(int64_t head_dim) {
  return head_dim <= 64 ? kDecodeHeads<64>
         : head_dim <= 128 ? kDecodeHeads<128>
         : head_dim <= 256 ? kDecodeHeads<256>
                           : kDecodeHeads<512>;
}

int SmCount() {
  int device = 0, sms = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess ||
      sms <= 0) {
    return 1;
  }
  return sms;
}

// Upper bound on num_seqs * num_partitions for automatic partitions: the
// partitions of a batch never exceed ceil(max_context_len / 512) per
// sequence nor ceil(target blocks / num_seqs).
int64_t AutoPartitionSlots(int64_t num_seqs, int32_t max_context_len, int sms) {
  const int64_t by_length = num_seqs * CeilDiv(max_context_len, kMinPartitionTokens);
  const int64_t by_sms = static_cast<int64_t>(kTargetBlocksPerSm) * sms + num_seqs;
  return by_length < by_sms ? by_length : by_sms;
}

template <typename T, int kD>
cudaError_t LaunchDecode(const Args& a, int num_seqs, cudaStream_t stream) {
  const dim3 grid(num_seqs, a.num_kv_heads * a.head_chunks, a.num_partitions);
  cudaError_t err = launch_kernel(DecodeKernel<T, kD>, grid, dim3(kThreads), 0, stream, a);
  if (err != cudaSuccess || a.num_partitions == 1) return err;
  // 4 floats of slack: ptxas (CUDA 13) merges the guarded tail reads of
  // weight_s into one wider load that may pass the last partition, which
  // compute-sanitizer reports when it crosses the end of shared memory.
  return launch_kernel(ReduceKernel, dim3(num_seqs, a.num_heads), dim3(kThreads),
                       sizeof(float) * (a.num_partitions + 4), stream, a);
}

template <typename T, int kD>
cudaError_t LaunchPrefill(const Args& a, int num_seqs, cudaStream_t stream) {
  constexpr size_t kSmem = PrefillSmemBytes<kD>();
  if (kSmem > 48 * 1024) {
    const cudaError_t err = cudaFuncSetAttribute(
        PrefillKernel<T, kD>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(kSmem));
    if (err != cudaSuccess) return err;
  }
  const int64_t tiles = CeilDiv(static_cast<int64_t>(a.max_query_len) * a.group, kPrefillRows<kD>);
  const dim3 grid(static_cast<unsigned>(tiles), a.num_kv_heads, num_seqs);
  return launch_kernel(PrefillKernel<T, kD>, grid, dim3(kThreads), kSmem, stream, a);
}

// Instantiations: {F32, BF16} x head dim buckets {64, 128, 256, 512}.
template <typename T>
cudaError_t Dispatch(const Args& a, bool decode, int num_seqs, cudaStream_t stream) {
  const int d = a.head_dim;
  if (decode) {
    if (d <= 64) return LaunchDecode<T, 64>(a, num_seqs, stream);
    if (d <= 128) return LaunchDecode<T, 128>(a, num_seqs, stream);
    if (d <= 256) return LaunchDecode<T, 256>(a, num_seqs, stream);
    if (d <= 512) return LaunchDecode<T, 512>(a, num_seqs, stream);
  } else {
    if (d <= 64) return LaunchPrefill<T, 64>(a, num_seqs, stream);
    if (d <= 128) return LaunchPrefill<T, 128>(a, num_seqs, stream);
    if (d <= 256) return LaunchPrefill<T, 256>(a, num_seqs, stream);
    if (d <= 512) return LaunchPrefill<T, 512>(a, num_seqs, stream);
  }
  return cudaErrorInvalidValue;  // head_dim is validated before
}

bool Aligned(const void* p, size_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

}  // namespace

size_t PagedAttentionWorkspaceBytes(int64_t num_seqs, int64_t num_heads, int64_t head_dim,
                                    int32_t max_context_len, int32_t partition_tokens) {
  if (num_seqs <= 0 || num_heads <= 0 || head_dim <= 0 || max_context_len <= 0) return 0;
  int64_t slots = 0;  // num_seqs * num_partitions
  if (partition_tokens > 0) {
    const int64_t parts = CeilDiv(max_context_len, partition_tokens);
    if (parts <= 1) return 0;
    slots = num_seqs * parts;
  } else {
    if (max_context_len <= kMinPartitionTokens) return 0;
    slots = AutoPartitionSlots(num_seqs, max_context_len, SmCount());
  }
  return static_cast<size_t>(slots * num_heads * (head_dim + 2)) * sizeof(float);
}

cudaError_t PagedAttention(const PagedAttentionParams& p, cudaStream_t stream) {
  using kernels::DType;
  if (p.num_seqs < 0 || p.num_heads <= 0 || p.num_kv_heads <= 0 ||
      p.num_heads % p.num_kv_heads != 0 || p.num_kv_heads > 65535 || p.head_dim <= 0 ||
      p.head_dim > kMaxHeadDim || p.block_size <= 0 || p.block_size > kMaxBlockSize ||
      p.num_blocks < 0 || p.q_stride < p.num_heads * p.head_dim ||
      p.out_stride < p.num_heads * p.head_dim ||
      (p.kv_dtype != DType::kF32 && p.kv_dtype != DType::kBF16) || p.sliding_window < 0 ||
      !(p.scale >= 0.0f) || !std::isfinite(p.scale) || p.max_query_len < 0 ||
      p.max_context_len < p.max_query_len || p.partition_tokens < 0 ||
      p.partition_tokens % kKeyTile != 0 || p.num_seqs > 65535) {
    return cudaErrorInvalidValue;
  }
  if (p.num_seqs == 0 || p.max_query_len == 0) return cudaSuccess;
  if (p.q == nullptr || p.out == nullptr || p.k_cache == nullptr || p.v_cache == nullptr ||
      p.query_start == nullptr || p.context_lens == nullptr || p.block_tables == nullptr ||
      p.block_table_stride < CeilDiv(p.max_context_len, p.block_size)) {
    return cudaErrorInvalidValue;
  }
  const bool bf16 = p.kv_dtype == DType::kBF16;
  Args a{};
  a.q = p.q;
  a.q_stride = p.q_stride;
  a.out = p.out;
  a.out_stride = p.out_stride;
  a.k_cache = p.k_cache;
  a.v_cache = p.v_cache;
  a.num_blocks = p.num_blocks;
  a.block_size = static_cast<int>(p.block_size);
  a.query_start = p.query_start;
  a.context_lens = p.context_lens;
  a.block_tables = p.block_tables;
  a.block_table_stride = p.block_table_stride;
  a.num_heads = static_cast<int>(p.num_heads);
  a.num_kv_heads = static_cast<int>(p.num_kv_heads);
  a.head_dim = static_cast<int>(p.head_dim);
  a.group = static_cast<int>(p.num_heads / p.num_kv_heads);
  a.scale = p.scale > 0.0f ? p.scale : 1.0f / std::sqrt(static_cast<float>(p.head_dim));
  // A window at least as long as every context is no window.
  a.sliding_window =
      p.sliding_window >= p.max_context_len ? 0 : static_cast<int>(p.sliding_window);
  a.max_query_len = p.max_query_len;
  a.max_context_len = p.max_context_len;
  const size_t vec_bytes = bf16 ? 8 : 16;
  const bool aligned = Aligned(p.k_cache, vec_bytes) && Aligned(p.v_cache, vec_bytes);
  a.vec_rows = aligned && p.head_dim % 4 == 0;
  a.vec_keys = aligned && p.block_size % 4 == 0;
  a.error = p.error;
  a.num_partitions = 1;
  a.head_chunks = 1;
  a.partition_tokens = kKeyTile;
  const int num_seqs = static_cast<int>(p.num_seqs);

  const bool decode = p.max_query_len == 1;
  if (decode) {
    const int heads_per_block = DecodeHeadsFor(p.head_dim);
    a.head_chunks = static_cast<int>(CeilDiv(a.group, heads_per_block));
    if (static_cast<int64_t>(a.num_kv_heads) * a.head_chunks > 65535) return cudaErrorInvalidValue;
    // Keys a decode row may see, from the 32-aligned start of its window.
    const int64_t visible = a.sliding_window > 0
                                ? std::min<int64_t>(p.max_context_len, a.sliding_window + kKeyTile)
                                : p.max_context_len;
    const int64_t slot_bytes = p.num_heads * (p.head_dim + 2) * static_cast<int64_t>(sizeof(float));
    int64_t parts = 1;
    if (p.partition_tokens > 0) {
      parts = CeilDiv(visible, p.partition_tokens);
      if (parts > kMaxPartitions) return cudaErrorInvalidValue;
      if (parts > 1 && (p.workspace == nullptr ||
                        static_cast<int64_t>(p.workspace_bytes) < num_seqs * parts * slot_bytes)) {
        return cudaErrorInvalidValue;
      }
      a.partition_tokens = p.partition_tokens;
    } else {
      const int64_t blocks = static_cast<int64_t>(num_seqs) * a.num_kv_heads * a.head_chunks;
      const int64_t want = CeilDiv(static_cast<int64_t>(kTargetBlocksPerSm) * SmCount(), blocks);
      parts = std::min<int64_t>({want, CeilDiv(visible, kMinPartitionTokens), kMaxPartitions});
      // Split less when the workspace is short.
      const int64_t fit = p.workspace == nullptr
                              ? 1
                              : static_cast<int64_t>(p.workspace_bytes) / (num_seqs * slot_bytes);
      parts = std::max<int64_t>(1, std::min(parts, fit));
      const int64_t len = CeilDiv(CeilDiv(visible, parts), kKeyTile) * kKeyTile;
      parts = CeilDiv(visible, len);
      a.partition_tokens = static_cast<int>(std::min<int64_t>(len, 1 << 30));
    }
    a.num_partitions = static_cast<int>(parts);
    if (parts > 1) {
      const int64_t slots = static_cast<int64_t>(num_seqs) * p.num_heads * parts;
      a.ws_out = static_cast<float*>(p.workspace);
      a.ws_max = a.ws_out + slots * p.head_dim;
      a.ws_sum = a.ws_max + slots;
    }
  } else if (CeilDiv(static_cast<int64_t>(p.max_query_len) * a.group, kPrefillRows<512>) >
             0x7fffffff) {
    return cudaErrorInvalidValue;
  }
  return bf16 ? Dispatch<uint16_t>(a, decode, num_seqs, stream)
              : Dispatch<float>(a, decode, num_seqs, stream);
}

}  // namespace kestrel::cuda
