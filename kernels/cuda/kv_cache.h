// Writing the new tokens' keys and values into the paged KV cache on the GPU
// (Ops::WriteKvCache). Layout (docs/kv_cache.md), per layer, slot = block *
// block_size + offset: K as [num_blocks, num_kv_heads, head_dim, block_size]
// (keys transposed per block and head, so attention reads a block's keys
// for one dimension contiguously), V as [num_blocks, num_kv_heads,
// block_size, head_dim]; elements F32 or BF16 (rounded to nearest even).
// One thread block per token. Bad slots are found in device memory, so they
// are skipped and reported through DeviceError (device_error.h).
#ifndef KESTREL_KERNELS_CUDA_KV_CACHE_H_
#define KESTREL_KERNELS_CUDA_KV_CACHE_H_

#include <cstdint>

#include "kernels/cuda/cuda_compat.h"
#include "kernels/dtype.h"

namespace kestrel::cuda {

// kernels/cuda/device_error.h; declared here because that header defines
// device code, which a host-only compiler (the CUDA backend) cannot parse.
struct DeviceError;

// For each token t with slot_mapping[t] >= 0 (block b, offset o) and head g:
//   k_cache[b, g, :, o] = k[t, g, :], v_cache[b, g, o, :] = v[t, g, :].
// k: [num_tokens, num_kv_heads, head_dim], token stride k_stride; v likewise.
// slot_mapping: [num_tokens] in device memory; -1 skips the token (padding);
//   a slot < -1 or >= num_blocks * block_size skips it too and is reported
//   as DeviceErrorCode::kKvSlot (index t, value the slot, limit num_blocks *
//   block_size) unless `error` is null.
// k_cache: [num_blocks, num_kv_heads, head_dim, block_size];
// v_cache: [num_blocks, num_kv_heads, block_size, head_dim]; cache_dtype
//   kF32 or kBF16.
// Device pointers. Returns cudaErrorInvalidValue for num_tokens < 0,
// num_kv_heads, head_dim or block_size <= 0, num_blocks < 0, a stride <
// num_kv_heads * head_dim, another dtype, or a null pointer when
// num_tokens > 0; otherwise the launch error (no tokens launch nothing).
cudaError_t WriteKvCache(const float* k, int64_t k_stride, const float* v, int64_t v_stride,
                         const int32_t* slot_mapping, int64_t num_tokens, int64_t num_kv_heads,
                         int64_t head_dim, void* k_cache, void* v_cache, int64_t num_blocks,
                         int64_t block_size, kernels::DType cache_dtype, DeviceError* error,
                         cudaStream_t stream);

}  // namespace kestrel::cuda

#endif  // KESTREL_KERNELS_CUDA_KV_CACHE_H_
