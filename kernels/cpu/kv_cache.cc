// KV-cache write (see kv_cache.h and docs/kv_cache.md).
#include "kernels/cpu/kv_cache.h"

#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"

namespace kestrel::kernels::cpu {

namespace {

inline void Store(float* dst, float x) { *dst = x; }
inline void Store(uint16_t* dst, float x) { *dst = F32ToBf16(x); }

template <typename T>
void Write(const float* k, int64_t k_stride, const float* v, int64_t v_stride,
           const int32_t* slot_mapping, int64_t num_tokens, int64_t num_kv_heads,
           int64_t head_dim, T* k_cache, T* v_cache, int64_t block_size) {
  const int64_t head_elems = head_dim * block_size;  // one (block, kv head)
  for (int64_t t = 0; t < num_tokens; ++t) {
    const int64_t slot = slot_mapping[t];
    if (slot < 0) continue;
    const int64_t block = slot / block_size, offset = slot % block_size;
    for (int64_t g = 0; g < num_kv_heads; ++g) {
      const int64_t base = (block * num_kv_heads + g) * head_elems;
      const float* ks = k + t * k_stride + g * head_dim;
      const float* vs = v + t * v_stride + g * head_dim;
      // K transposed: element i of this key at [i, offset] of the [d, bs] tile.
      T* kdst = k_cache + base + offset;
      for (int64_t i = 0; i < head_dim; ++i) Store(kdst + i * block_size, ks[i]);
      T* vdst = v_cache + base + offset * head_dim;
      for (int64_t i = 0; i < head_dim; ++i) Store(vdst + i, vs[i]);
    }
  }
}

}  // namespace

absl::Status WriteKvCache(const float* k, int64_t k_stride, const float* v, int64_t v_stride,
                          const int32_t* slot_mapping, int64_t num_tokens, int64_t num_kv_heads,
                          int64_t head_dim, void* k_cache, void* v_cache, int64_t num_blocks,
                          int64_t block_size, DType cache_dtype) {
  if (num_tokens < 0 || num_kv_heads <= 0 || head_dim <= 0 || num_blocks < 0 ||
      block_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "WriteKvCache: bad sizes num_tokens=", num_tokens, " num_kv_heads=", num_kv_heads,
        " head_dim=", head_dim, " num_blocks=", num_blocks, " block_size=", block_size));
  }
  if (cache_dtype != DType::kF32 && cache_dtype != DType::kBF16) {
    return absl::InvalidArgumentError(absl::StrCat("WriteKvCache: cache dtype ",
                                                   std::string(DTypeName(cache_dtype)),
                                                   " is not supported (F32 or BF16)"));
  }
  const int64_t row = num_kv_heads * head_dim;
  if (k_stride < row || v_stride < row) {
    return absl::InvalidArgumentError(absl::StrCat("WriteKvCache: k_stride=", k_stride,
                                                   " v_stride=", v_stride,
                                                   " must be >= num_kv_heads*head_dim=", row));
  }
  if (num_tokens == 0) return absl::OkStatus();
  if (k == nullptr || v == nullptr || slot_mapping == nullptr || k_cache == nullptr ||
      v_cache == nullptr) {
    return absl::InvalidArgumentError("WriteKvCache: null pointer");
  }
  const int64_t num_slots = num_blocks * block_size;
  for (int64_t t = 0; t < num_tokens; ++t) {
    const int64_t slot = slot_mapping[t];
    if (slot < -1 || slot >= num_slots) {
      return absl::InvalidArgumentError(absl::StrCat("WriteKvCache: slot_mapping[", t, "]=",
                                                     slot, " outside [-1, ", num_slots, ")"));
    }
  }
  if (cache_dtype == DType::kBF16) {
    Write(k, k_stride, v, v_stride, slot_mapping, num_tokens, num_kv_heads, head_dim,
          static_cast<uint16_t*>(k_cache), static_cast<uint16_t*>(v_cache), block_size);
  } else {
    Write(k, k_stride, v, v_stride, slot_mapping, num_tokens, num_kv_heads, head_dim,
          static_cast<float*>(k_cache), static_cast<float*>(v_cache), block_size);
  }
  return absl::OkStatus();
}

absl::Status CopyBlocks(void* base, int64_t num_arrays, int64_t array_stride, int64_t block_bytes,
                        int64_t num_blocks, const int32_t* pairs, int64_t num_pairs) {
  if (num_arrays < 0 || block_bytes < 0 || num_pairs < 0 ||
      array_stride < num_blocks * block_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "copy blocks: num_arrays ", num_arrays, ", array_stride ", array_stride,
        ", block_bytes ", block_bytes, ", num_blocks ", num_blocks, " are inconsistent"));
  }
  for (int64_t i = 0; i < num_pairs; ++i) {
    const int32_t src = pairs[2 * i], dst = pairs[2 * i + 1];
    if (src < 0 || src >= num_blocks || dst < 0 || dst >= num_blocks) {
      return absl::InvalidArgumentError(absl::StrCat("KV block copy ", src, " -> ", dst,
                                                     " is outside the pool of ", num_blocks,
                                                     " blocks"));
    }
  }
  char* bytes = static_cast<char*>(base);
  for (int64_t i = 0; i < num_pairs; ++i) {
    const int64_t src = pairs[2 * i], dst = pairs[2 * i + 1];
    if (src == dst) continue;
    for (int64_t a = 0; a < num_arrays; ++a) {
      char* array = bytes + a * array_stride;
      std::memcpy(array + dst * block_bytes, array + src * block_bytes,
                  static_cast<size_t>(block_bytes));
    }
  }
  return absl::OkStatus();
}

}  // namespace kestrel::kernels::cpu
