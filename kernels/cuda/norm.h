// RMSNorm on the GPU (Ops::RmsNorm, Ops::RmsNormPerHead) and the fused
// residual-add + RMSNorm a decoder layer uses between its blocks. Row norms
// run one thread block per row (warp shuffles, then one shared-memory step
// across warps); per-head norms run one warp per head. The sum of squares
// accumulates in F32 in a different order from the CPU's, so results agree
// with it to rounding, not bit for bit.
#ifndef KESTREL_KERNELS_CUDA_NORM_H_
#define KESTREL_KERNELS_CUDA_NORM_H_

#include <cstdint>

#include "kernels/cuda/cuda_compat.h"

namespace kestrel::cuda {

// out[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) * weight, r in [0, rows).
// x, out: [rows, dim] with row strides; out may equal x (in place).
// weight: [dim].
// Device pointers. Returns cudaErrorInvalidValue for rows < 0, dim <= 0,
// a stride < dim, eps < 0 or NaN, or a null pointer when rows > 0;
// otherwise the launch error (rows == 0 launches nothing).
cudaError_t RmsNorm(const float* x, int64_t x_stride, float* out, int64_t out_stride,
                    const float* weight, int64_t rows, int64_t dim, float eps, cudaStream_t stream);

// residual[r, :] += x[r, :]; out[r, :] = RmsNorm(residual[r, :]) as above.
// x, residual, out: [rows, dim] with row strides. out may equal x (in place);
// residual must not overlap x or out.
// Same errors as RmsNorm.
cudaError_t FusedAddRmsNorm(const float* x, int64_t x_stride, float* residual,
                            int64_t residual_stride, float* out, int64_t out_stride,
                            const float* weight, int64_t rows, int64_t dim, float eps,
                            cudaStream_t stream);

// In-place RMSNorm of every head of every token (Qwen3 q_norm / k_norm).
// x: [num_tokens, num_heads, head_dim], token stride x_stride (>= num_heads *
// head_dim), heads contiguous. weight: [head_dim].
// Returns cudaErrorInvalidValue for negative sizes, head_dim <= 0, a short
// stride, a bad eps, or a null pointer when there is work.
cudaError_t RmsNormPerHead(float* x, int64_t x_stride, int64_t num_tokens, int64_t num_heads,
                           int64_t head_dim, const float* weight, float eps, cudaStream_t stream);

}  // namespace kestrel::cuda

#endif  // KESTREL_KERNELS_CUDA_NORM_H_
