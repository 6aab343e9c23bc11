// Elementwise kernels of the cuBLAS GEMM path (see gemm_kernels.h). Both are
// memory bound and tiny next to the GEMM: one thread per element, rows on
// grid y, columns on grid x with grid-stride loops, so any m and k fit the
// grid limits.
#include "kernels/cuda/gemm_kernels.h"

#include "kernels/cuda/cuda_compat.h"

namespace kestrel::cuda::gemm_internal {
namespace {

using kernels::DType;

constexpr int kThreads = 256;
constexpr int64_t kMaxGridX = 1024;
constexpr int64_t kMaxGridY = 65535;

dim3 ElementwiseGrid(int64_t rows, int64_t columns) {
  const int64_t x = (columns + kThreads - 1) / kThreads;
  return dim3(static_cast<unsigned>(x < kMaxGridX ? x : kMaxGridX),
              static_cast<unsigned>(rows < kMaxGridY ? rows : kMaxGridY));
}

__device__ __forceinline__ void StoreAs(__nv_bfloat16* p, float v) { *p = __float2bfloat16(v); }
__device__ __forceinline__ void StoreAs(__half* p, float v) { *p = __float2half(v); }

template <typename T>
__global__ void __launch_bounds__(kThreads)
    CastKernel(const float* __restrict__ x, int64_t ldx, int64_t m, int64_t k,
               T* __restrict__ out) {
  for (int64_t r = blockIdx.y; r < m; r += gridDim.y) {
    for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < k;
         c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      StoreAs(out + r * k + c, x[r * ldx + c]);
    }
  }
}

__global__ void __launch_bounds__(kThreads)
    BiasKernel(float* __restrict__ y, int64_t ldy, const float* __restrict__ bias, int64_t m,
               int64_t n, bool overwrite) {
  for (int64_t r = blockIdx.y; r < m; r += gridDim.y) {
    for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < n;
         c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const float b = bias != nullptr ? bias[c] : 0.0f;
      float* out = y + r * ldy + c;
      *out = overwrite ? b : *out + b;
    }
  }
}

}  // namespace

cudaError_t CastActivations(const float* x, int64_t ldx, int64_t m, int64_t k, DType dtype,
                            void* out, cudaStream_t stream) {
  if (m <= 0 || k <= 0 || ldx < k) return cudaErrorInvalidValue;
  const dim3 grid = ElementwiseGrid(m, k);
  switch (dtype) {
    case DType::kBF16:
      return launch_kernel(CastKernel<__nv_bfloat16>, grid, dim3(kThreads), 0, stream, x, ldx, m,
                           k, static_cast<__nv_bfloat16*>(out));
    case DType::kF16:
      return launch_kernel(CastKernel<__half>, grid, dim3(kThreads), 0, stream, x, ldx, m, k,
                           static_cast<__half*>(out));
    default:
      return cudaErrorInvalidValue;
  }
}

cudaError_t BiasEpilogue(float* y, int64_t ldy, const float* bias, int64_t m, int64_t n,
                         bool overwrite, cudaStream_t stream) {
  if (m <= 0 || n <= 0 || ldy < n || (!overwrite && bias == nullptr)) {
    return cudaErrorInvalidValue;
  }
  return launch_kernel(BiasKernel, ElementwiseGrid(m, n), dim3(kThreads), 0, stream, y, ldy, bias,
                       m, n, overwrite);
}

}  // namespace kestrel::cuda::gemm_internal
