// Rotary position embedding on the GPU (Ops::ApplyRope), rotate-half form
// (HF Llama, GPT-NeoX): for a head vector x of size d, i < d/2 and the
// token's position p,
//   x'[i]       = x[i] * cos[p, i] - x[i + d/2] * sin[p, i]
//   x'[i + d/2] = x[i + d/2] * cos[p, i] + x[i] * sin[p, i]
// Table driven: theta and the linear / llama3 scalings live in the tables
// (kernels/rope_tables.h), so this kernel knows nothing about them. One
// thread block per token rotates all of its q and k heads.
#ifndef KESTREL_KERNELS_CUDA_ROPE_H_
#define KESTREL_KERNELS_CUDA_ROPE_H_

#include <cstdint>

#include "kernels/cuda/cuda_compat.h"

namespace kestrel::cuda {

// kernels/cuda/device_error.h; declared here because that header defines
// device code, which a host-only compiler (the CUDA backend) cannot parse.
struct DeviceError;

// In place on q and k.
// q: [num_tokens, num_q_heads, head_dim], token stride q_stride.
// k: [num_tokens, num_kv_heads, head_dim], token stride k_stride; may be null
//    when num_kv_heads == 0.
// positions: [num_tokens] in device memory. A position outside
//    [0, max_positions) leaves that token's q and k untouched and is reported
//    as DeviceErrorCode::kRowIndex (index t, value the position, limit
//    max_positions) unless `error` is null.
// cos_table, sin_table: [max_positions, head_dim / 2] (ComputeRopeTables).
// Device pointers. Returns cudaErrorInvalidValue for head_dim odd or <= 0,
// negative sizes, a stride < heads * head_dim, max_positions < 0, or a null
// pointer needed by the work; otherwise the launch error (num_tokens == 0
// launches nothing).
cudaError_t ApplyRope(float* q, int64_t q_stride, int64_t num_q_heads, float* k, int64_t k_stride,
                      int64_t num_kv_heads, const int32_t* positions, int64_t num_tokens,
                      int64_t head_dim, const float* cos_table, const float* sin_table,
                      int64_t max_positions, DeviceError* error, cudaStream_t stream);

}  // namespace kestrel::cuda

#endif  // KESTREL_KERNELS_CUDA_ROPE_H_
