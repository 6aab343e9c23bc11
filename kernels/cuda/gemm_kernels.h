// The small kernels around cublasGemmEx in gemm.cc: the activation cast for
// F16/BF16 weights and the bias epilogue. Private to the gemm library.
#ifndef KESTREL_KERNELS_CUDA_GEMM_KERNELS_H_
#define KESTREL_KERNELS_CUDA_GEMM_KERNELS_H_

#include <cstdint>

#include "kernels/cuda/cuda_compat.h"
#include "kernels/dtype.h"

namespace kestrel::cuda::gemm_internal {

// out[m, k] (dense: row stride k) = x[m, k] (row stride ldx) rounded to
// nearest even in `dtype` (kF16 or kBF16; anything else is
// cudaErrorInvalidValue). Device pointers; m, k > 0.
cudaError_t CastActivations(const float* x, int64_t ldx, int64_t m, int64_t k,
                            kernels::DType dtype, void* out, cudaStream_t stream);

// y[m, n] (row stride ldy) = bias (zeros where bias is null) if `overwrite`,
// else y += bias (bias non-null). Device pointers; m, n > 0.
cudaError_t BiasEpilogue(float* y, int64_t ldy, const float* bias, int64_t m, int64_t n,
                         bool overwrite, cudaStream_t stream);

}  // namespace kestrel::cuda::gemm_internal

#endif  // KESTREL_KERNELS_CUDA_GEMM_KERNELS_H_
