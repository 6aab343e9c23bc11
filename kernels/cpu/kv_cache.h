// Writing new keys/values into the paged KV cache on the CPU. The cache
// layout (per layer, F32 or BF16, slot = block * block_size + offset; K as
// [num_blocks, num_kv_heads, head_dim, block_size], V as [num_blocks,
// num_kv_heads, block_size, head_dim]) is in docs/kv_cache.md.
#ifndef KESTREL_KERNELS_CPU_KV_CACHE_H_
#define KESTREL_KERNELS_CPU_KV_CACHE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/dtype.h"

namespace kestrel::kernels::cpu {

// For each token t with slot_mapping[t] >= 0 (block b, offset o) and head g:
//   k_cache[b, g, :, o] = k[t, g, :], v_cache[b, g, o, :] = v[t, g, :].
// k: [num_tokens, num_kv_heads, head_dim], token stride k_stride; v likewise.
// slot_mapping: [num_tokens]; -1 skips a token; any other negative value or a
//   slot >= num_blocks * block_size is InvalidArgument (checked before
//   anything is written).
// k_cache: [num_blocks, num_kv_heads, head_dim, block_size];
// v_cache: [num_blocks, num_kv_heads, block_size, head_dim].
// cache_dtype: kF32, or kBF16 (each value rounded to nearest even).
absl::Status WriteKvCache(const float* k, int64_t k_stride, const float* v, int64_t v_stride,
                          const int32_t* slot_mapping, int64_t num_tokens, int64_t num_kv_heads,
                          int64_t head_dim, void* k_cache, void* v_cache, int64_t num_blocks,
                          int64_t block_size, DType cache_dtype = DType::kF32);

// Copy-on-write of whole blocks in every array of the pool (see
// Ops::CopyBlocks). pairs: [num_pairs, 2] (src, dst).
absl::Status CopyBlocks(void* base, int64_t num_arrays, int64_t array_stride, int64_t block_bytes,
                        int64_t num_blocks, const int32_t* pairs, int64_t num_pairs);

}  // namespace kestrel::kernels::cpu

#endif  // KESTREL_KERNELS_CPU_KV_CACHE_H_
