// Rotary position embedding on the CPU, rotate-half form (HF Llama,
// GPT-NeoX): for a head vector x of size d and i < d/2,
//   x'[i]       = x[i] * cos[p, i] - x[i + d/2] * sin[p, i]
//   x'[i + d/2] = x[i + d/2] * cos[p, i] + x[i] * sin[p, i]
// with tables from kernels/rope_tables.h (theta, linear and llama3 scaling).
#ifndef KESTREL_KERNELS_CPU_ROPE_H_
#define KESTREL_KERNELS_CPU_ROPE_H_

#include <cstdint>

#include "absl/status/status.h"

namespace kestrel::kernels::cpu {

// In place on q and k.
// q: [num_tokens, num_q_heads, head_dim], token stride q_stride.
// k: [num_tokens, num_kv_heads, head_dim], token stride k_stride; may be null
//    if num_kv_heads == 0.
// positions: [num_tokens]; each must be in [0, max_positions) (else
//    InvalidArgument, nothing is written).
// cos_table, sin_table: [max_positions, head_dim / 2].
// REQUIRES: head_dim even.
absl::Status ApplyRope(float* q, int64_t q_stride, int64_t num_q_heads, float* k,
                       int64_t k_stride, int64_t num_kv_heads, const int32_t* positions,
                       int64_t num_tokens, int64_t head_dim, const float* cos_table,
                       const float* sin_table, int64_t max_positions);

}  // namespace kestrel::kernels::cpu

#endif  // KESTREL_KERNELS_CPU_ROPE_H_
