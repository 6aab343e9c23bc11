// Test kernels for the emulation (see emulation_test_kernels.h).
#include "kernels/cuda/emulation/emulation_test_kernels.h"

#include "kernels/cuda/cuda_compat.h"

namespace kestrel::cuda::testing {
namespace {

constexpr int kProbeWidth = 64;
constexpr int kSumThreads = 256;

__global__ void ProbeStaticSharedKernel(unsigned* out) {
  __shared__ unsigned scratch[kProbeWidth];
  if (threadIdx.x < kProbeWidth) {
    out[blockIdx.x * kProbeWidth + threadIdx.x] = scratch[threadIdx.x];
    scratch[threadIdx.x] = blockIdx.x;
  }
}

template <bool kDropLoopBarrier>
__global__ void __launch_bounds__(kSumThreads) BlockSumKernel(const float* in, float* out) {
  __shared__ float partial[kSumThreads];
  partial[threadIdx.x] = in[blockIdx.x * kSumThreads + threadIdx.x];
  __syncthreads();
  for (int stride = kSumThreads / 2; stride > 0; stride /= 2) {
    if (static_cast<int>(threadIdx.x) < stride) {
      partial[threadIdx.x] += partial[threadIdx.x + stride];
    }
    if (!kDropLoopBarrier) __syncthreads();
  }
  if (kDropLoopBarrier) __syncthreads();
  if (threadIdx.x == 0) out[blockIdx.x] = partial[0];
}

}  // namespace

cudaError_t ProbeStaticShared(unsigned* out, int blocks, cudaStream_t stream) {
  if (blocks <= 0) return cudaErrorInvalidValue;
  return launch_kernel(ProbeStaticSharedKernel, dim3(blocks), dim3(kProbeWidth), 0, stream, out);
}

cudaError_t BlockSums(const float* in, float* out, int blocks, bool drop_loop_barrier,
                      cudaStream_t stream) {
  if (blocks <= 0) return cudaErrorInvalidValue;
  return drop_loop_barrier
             ? launch_kernel(BlockSumKernel<true>, dim3(blocks), dim3(kSumThreads), 0, stream, in,
                             out)
             : launch_kernel(BlockSumKernel<false>, dim3(blocks), dim3(kSumThreads), 0, stream,
                             in, out);
}

}  // namespace kestrel::cuda::testing
