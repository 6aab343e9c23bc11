#include "kernels/cuda/rms_norm.h"

#include "kernels/cuda/cuda_compat.h"

namespace kestrel::cuda {
namespace {

// Threads per block: a multiple of the warp size, with full-mask shuffles.
constexpr int kBlockThreads = 256;
constexpr int kWarpSize = 32;

__device__ __forceinline__ float WarpSum(float value) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    value += __shfl_xor_sync(0xffffffffu, value, offset);
  }
  return value;
}

// One block per row. Every thread reaches both barriers: there is no early
// return before them.
__global__ void RmsNormKernel(float* out, int64_t out_stride, const float* in, int64_t in_stride,
                              const float* weight, int hidden, float eps) {
  __shared__ float warp_sums[kBlockThreads / kWarpSize];
  __shared__ float inv_rms;
  const float* row_in = in + blockIdx.x * in_stride;
  float* row_out = out + blockIdx.x * out_stride;

  float sum = 0.0f;
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) sum += row_in[i] * row_in[i];
  sum = WarpSum(sum);
  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (lane == 0) warp_sums[warp] = sum;
  __syncthreads();
  if (warp == 0) {
    float total = lane < static_cast<int>(blockDim.x) / kWarpSize ? warp_sums[lane] : 0.0f;
    total = WarpSum(total);
    if (lane == 0) inv_rms = rsqrtf(total / hidden + eps);
  }
  __syncthreads();
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
    row_out[i] = row_in[i] * inv_rms * weight[i];
  }
}

}  // namespace

cudaError_t RmsNorm(float* out, int64_t out_stride, const float* in, int64_t in_stride,
                    const float* weight, int num_rows, int hidden, float eps,
                    cudaStream_t stream) {
  if (num_rows <= 0 || hidden <= 0 || out_stride < hidden || in_stride < hidden) {
    return cudaErrorInvalidValue;
  }
  return launch_kernel(RmsNormKernel, dim3(num_rows), dim3(kBlockThreads), 0, stream, out,
                       out_stride, in, in_stride, weight, hidden, eps);
}

}  // namespace kestrel::cuda
