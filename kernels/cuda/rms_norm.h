// RMSNorm on the GPU: y = x / sqrt(mean(x^2) + eps) * weight, one row per
// thread block. Host launcher; plain C++ so callers need not use nvcc.
#ifndef KESTREL_KERNELS_CUDA_RMS_NORM_H_
#define KESTREL_KERNELS_CUDA_RMS_NORM_H_

#include <cstdint>

#include "kernels/cuda/cuda_compat.h"

namespace kestrel::cuda {

// out:    [num_rows, hidden] (row stride `out_stride` floats)
// in:     [num_rows, hidden] (row stride `in_stride` floats)
// weight: [hidden]
// Device pointers. Returns cudaErrorInvalidValue for non-positive sizes or
// strides shorter than `hidden`; otherwise the launch error.
cudaError_t RmsNorm(float* out, int64_t out_stride, const float* in, int64_t in_stride,
                    const float* weight, int num_rows, int hidden, float eps,
                    cudaStream_t stream);

}  // namespace kestrel::cuda

#endif  // KESTREL_KERNELS_CUDA_RMS_NORM_H_
