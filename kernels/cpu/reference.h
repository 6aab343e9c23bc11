// Plain scalar reference implementations of every CPU kernel: textbook loops,
// double accumulation, no tiling, no threads, no validation. The kernel tests
// compare against these; the shapes and semantics are those of kernels/ops.h.
#ifndef KESTREL_KERNELS_CPU_REFERENCE_H_
#define KESTREL_KERNELS_CPU_REFERENCE_H_

#include <cstdint>

#include "kernels/dtype.h"
#include "kernels/ops.h"

namespace kestrel::kernels::reference {

// y = x · Wᵀ (+bias) (+y), as GemmParams (bf16_dot rounds x to bf16 first;
// kI8 weights quantize x per row to int8 first, as the kernels do).
void Gemm(const GemmParams& p);

void RmsNorm(const float* x, int64_t x_stride, float* out, int64_t out_stride,
             const float* weight, int64_t rows, int64_t dim, float eps);

// q: [num_tokens, num_q_heads, head_dim]; k: [num_tokens, num_kv_heads,
// head_dim] (contiguous). cos/sin computed directly from `inv_freq`
// [head_dim/2] in double.
void ApplyRope(float* q, int64_t num_q_heads, float* k, int64_t num_kv_heads,
               const int32_t* positions, int64_t num_tokens, int64_t head_dim,
               const float* inv_freq);

void SiluAndMul(const float* gate, const float* up, float* out, int64_t n);

// One sequence's attention for its new tokens against a dense history:
// q [n_new, num_heads, d]; keys, values [ctx, num_kv_heads, d] (positions
// 0..ctx-1, the last n_new being the new tokens); out [n_new, num_heads, d].
void Attention(const float* q, const float* keys, const float* values, float* out,
               int64_t n_new, int64_t ctx, int64_t num_heads, int64_t num_kv_heads, int64_t d,
               float scale, int64_t sliding_window);

void Softmax(const float* x, float* out, int64_t n);
void LogSoftmax(const float* x, float* out, int64_t n);

}  // namespace kestrel::kernels::reference

#endif  // KESTREL_KERNELS_CPU_REFERENCE_H_
