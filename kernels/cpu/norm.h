// RMSNorm on the CPU (Llama family input/post-attention/final norms, and
// Qwen3's per-head q/k norm). Sums of squares accumulate in F32 over the row.
#ifndef KESTREL_KERNELS_CPU_NORM_H_
#define KESTREL_KERNELS_CPU_NORM_H_

#include <cstdint>

#include "absl/status/status.h"

namespace kestrel::kernels::cpu {

// out[r, :] = x[r, :] * (1 / sqrt(mean(x[r, :]²) + eps)) * weight.
// x: [rows, dim], row stride x_stride. out: [rows, dim], row stride
// out_stride; out may equal x. weight: [dim] F32. eps >= 0.
absl::Status RmsNorm(const float* x, int64_t x_stride, float* out, int64_t out_stride,
                     const float* weight, int64_t rows, int64_t dim, float eps);

// In-place RMSNorm of every head of every token (Qwen3 q_norm/k_norm).
// x: [num_tokens, num_heads, head_dim], token stride x_stride (>= num_heads *
// head_dim), heads contiguous. weight: [head_dim] F32.
absl::Status RmsNormPerHead(float* x, int64_t x_stride, int64_t num_tokens, int64_t num_heads,
                            int64_t head_dim, const float* weight, float eps);

}  // namespace kestrel::kernels::cpu

#endif  // KESTREL_KERNELS_CPU_NORM_H_
