// RMSNorm kernels (see norm.h).
//
// Row norms: one block per row, sized to the row (32..256 threads), each
// thread owning the same elements (float4 when the row allows) in both
// passes: the first sums squares (and, fused, writes residual += x), the
// second scales. Owning the same elements is what makes out == x safe. The
// second pass rereads the row, which on a GPU comes from L1/L2.
// Per-head norms: one warp per (token, head), four warps per block; a warp
// reduces with shuffles only, so warps never wait for each other.
#include "kernels/cuda/norm.h"

#include "kernels/cuda/cuda_compat.h"

namespace kestrel::cuda {
namespace {

constexpr int kWarpSize = 32;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kMaxRowThreads = 256;
constexpr int kHeadWarpsPerBlock = 4;
constexpr int kHeadThreads = kHeadWarpsPerBlock * kWarpSize;

__device__ __forceinline__ float WarpSum(float value) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    value += __shfl_xor_sync(kFullMask, value, offset);
  }
  return value;
}

// The sum of `value` over the block, returned to every thread. Every thread
// of the block must call it. scratch: kMaxRowThreads / 32 + 1 shared floats.
__device__ __forceinline__ float BlockSum(float value, float* scratch) {
  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  const int num_warps = blockDim.x / kWarpSize;
  value = WarpSum(value);
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  if (warp == 0) {
    float total = lane < num_warps ? scratch[lane] : 0.0f;
    total = WarpSum(total);
    if (lane == 0) scratch[kMaxRowThreads / kWarpSize] = total;
  }
  __syncthreads();
  return scratch[kMaxRowThreads / kWarpSize];
}

__device__ __forceinline__ float SumSquares(float4 v) {
  return v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
}

__device__ __forceinline__ float4 Add(float4 a, float4 b) {
  return make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
}

__device__ __forceinline__ float4 Scale(float4 v, float inv, float4 w) {
  return make_float4(v.x * inv * w.x, v.y * inv * w.y, v.z * inv * w.z, v.w * inv * w.w);
}

// kFused: residual += x first, then normalize residual. kVec4: float4
// access (dim % 4 == 0, every pointer 16-byte aligned, strides % 4 == 0).
// x and out may be the same row, so neither is __restrict__.
template <bool kFused, bool kVec4>
__global__ void __launch_bounds__(kMaxRowThreads)
    RowNormKernel(const float* x, int64_t x_stride, float* residual, int64_t residual_stride,
                  float* out, int64_t out_stride, const float* __restrict__ weight, int64_t dim,
                  float eps) {
  __shared__ float scratch[kMaxRowThreads / kWarpSize + 1];
  const int64_t row = blockIdx.x;
  const float* x_row = x + row * x_stride;
  float* res_row = kFused ? residual + row * residual_stride : nullptr;
  float* out_row = out + row * out_stride;
  // The row being normalized: x, or the updated residual.
  const float* src = kFused ? res_row : x_row;

  float sum = 0.0f;
  if constexpr (kVec4) {
    const int64_t n4 = dim / 4;
    for (int64_t i = threadIdx.x; i < n4; i += blockDim.x) {
      float4 v = reinterpret_cast<const float4*>(x_row)[i];
      if constexpr (kFused) {
        v = Add(reinterpret_cast<const float4*>(res_row)[i], v);
        reinterpret_cast<float4*>(res_row)[i] = v;
      }
      sum += SumSquares(v);
    }
  } else {
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
      float v = x_row[i];
      if constexpr (kFused) {
        v = res_row[i] + v;
        res_row[i] = v;
      }
      sum += v * v;
    }
  }
  const float inv = rsqrtf(BlockSum(sum, scratch) / static_cast<float>(dim) + eps);

  if constexpr (kVec4) {
    const int64_t n4 = dim / 4;
    for (int64_t i = threadIdx.x; i < n4; i += blockDim.x) {
      reinterpret_cast<float4*>(out_row)[i] =
          Scale(reinterpret_cast<const float4*>(src)[i], inv,
                __ldg(reinterpret_cast<const float4*>(weight) + i));
    }
  } else {
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
      out_row[i] = src[i] * inv * __ldg(weight + i);
    }
  }
}

// One warp per head of num_heads_total = num_tokens * num_heads.
template <bool kVec4>
__global__ void __launch_bounds__(kHeadThreads)
    PerHeadNormKernel(float* x, int64_t x_stride, int64_t num_heads, int64_t num_heads_total,
                      int64_t head_dim, const float* __restrict__ weight, float eps) {
  const int64_t head =
      static_cast<int64_t>(blockIdx.x) * kHeadWarpsPerBlock + threadIdx.x / kWarpSize;
  if (head >= num_heads_total) return;  // the whole warp leaves; no block barrier follows
  const int lane = threadIdx.x % kWarpSize;
  float* v = x + (head / num_heads) * x_stride + (head % num_heads) * head_dim;

  float sum = 0.0f;
  if constexpr (kVec4) {
    for (int64_t i = lane; i < head_dim / 4; i += kWarpSize) {
      sum += SumSquares(reinterpret_cast<const float4*>(v)[i]);
    }
  } else {
    for (int64_t i = lane; i < head_dim; i += kWarpSize) sum += v[i] * v[i];
  }
  const float inv = rsqrtf(WarpSum(sum) / static_cast<float>(head_dim) + eps);
  if constexpr (kVec4) {
    for (int64_t i = lane; i < head_dim / 4; i += kWarpSize) {
      float4* p = reinterpret_cast<float4*>(v) + i;
      *p = Scale(*p, inv, __ldg(reinterpret_cast<const float4*>(weight) + i));
    }
  } else {
    for (int64_t i = lane; i < head_dim; i += kWarpSize) v[i] = v[i] * inv * __ldg(weight + i);
  }
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Threads for a row of `units` (floats or float4s): a multiple of the warp
// size, at most kMaxRowThreads.
int RowThreads(int64_t units) {
  const int64_t warps = (units + kWarpSize - 1) / kWarpSize;
  return static_cast<int>(warps >= kMaxRowThreads / kWarpSize ? kMaxRowThreads : warps * kWarpSize);
}

bool BadEps(float eps) { return !(eps >= 0.0f); }

template <bool kFused>
cudaError_t LaunchRowNorm(const float* x, int64_t x_stride, float* residual,
                          int64_t residual_stride, float* out, int64_t out_stride,
                          const float* weight, int64_t rows, int64_t dim, float eps,
                          cudaStream_t stream) {
  const bool vec4 = dim % 4 == 0 && x_stride % 4 == 0 && out_stride % 4 == 0 && Aligned16(x) &&
                    Aligned16(out) && Aligned16(weight) &&
                    (!kFused || (residual_stride % 4 == 0 && Aligned16(residual)));
  const dim3 grid(static_cast<unsigned>(rows));
  const dim3 block(RowThreads(vec4 ? dim / 4 : dim));
  if (vec4) {
    return launch_kernel(RowNormKernel<kFused, true>, grid, block, 0, stream, x, x_stride, residual,
                         residual_stride, out, out_stride, weight, dim, eps);
  }
  return launch_kernel(RowNormKernel<kFused, false>, grid, block, 0, stream, x, x_stride, residual,
                       residual_stride, out, out_stride, weight, dim, eps);
}

}  // namespace

cudaError_t RmsNorm(const float* x, int64_t x_stride, float* out, int64_t out_stride,
                    const float* weight, int64_t rows, int64_t dim, float eps,
                    cudaStream_t stream) {
  if (rows < 0 || rows > 0x7fffffff || dim <= 0 || x_stride < dim || out_stride < dim ||
      BadEps(eps)) {
    return cudaErrorInvalidValue;
  }
  if (rows == 0) return cudaSuccess;
  if (x == nullptr || out == nullptr || weight == nullptr) return cudaErrorInvalidValue;
  return LaunchRowNorm<false>(x, x_stride, nullptr, 0, out, out_stride, weight, rows, dim, eps,
                              stream);
}

cudaError_t FusedAddRmsNorm(const float* x, int64_t x_stride, float* residual,
                            int64_t residual_stride, float* out, int64_t out_stride,
                            const float* weight, int64_t rows, int64_t dim, float eps,
                            cudaStream_t stream) {
  if (rows < 0 || rows > 0x7fffffff || dim <= 0 || x_stride < dim || residual_stride < dim ||
      out_stride < dim || BadEps(eps)) {
    return cudaErrorInvalidValue;
  }
  if (rows == 0) return cudaSuccess;
  if (x == nullptr || residual == nullptr || out == nullptr || weight == nullptr) {
    return cudaErrorInvalidValue;
  }
  return LaunchRowNorm<true>(x, x_stride, residual, residual_stride, out, out_stride, weight, rows,
                             dim, eps, stream);
}

cudaError_t RmsNormPerHead(float* x, int64_t x_stride, int64_t num_tokens, int64_t num_heads,
                           int64_t head_dim, const float* weight, float eps, cudaStream_t stream) {
  if (num_tokens < 0 || num_heads < 0 || head_dim <= 0 || x_stride < num_heads * head_dim ||
      BadEps(eps)) {
    return cudaErrorInvalidValue;
  }
  if (num_tokens == 0 || num_heads == 0) return cudaSuccess;
  if (x == nullptr || weight == nullptr) return cudaErrorInvalidValue;
  const int64_t total = num_tokens * num_heads;
  const int64_t blocks = (total + kHeadWarpsPerBlock - 1) / kHeadWarpsPerBlock;
  if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(blocks));
  const dim3 block(kHeadThreads);
  if (head_dim % 4 == 0 && x_stride % 4 == 0 && Aligned16(x) && Aligned16(weight)) {
    return launch_kernel(PerHeadNormKernel<true>, grid, block, 0, stream, x, x_stride, num_heads,
                         total, head_dim, weight, eps);
  }
  return launch_kernel(PerHeadNormKernel<false>, grid, block, 0, stream, x, x_stride, num_heads,
                       total, head_dim, weight, eps);
}

}  // namespace kestrel::cuda
