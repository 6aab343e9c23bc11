// KV-cache write (see kv_cache.h and docs/kv_cache.md).
#include "kernels/cpu/kv_cache.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace kestrel::kernels::cpu {

absl::Status WriteKvCache(const float* k, int64_t k_stride, const float* v, int64_t v_stride,
                          const int32_t* slot_mapping, int64_t num_tokens, int64_t num_kv_heads,
                          int64_t head_dim, float* k_cache, float* v_cache, int64_t num_blocks,
                          int64_t block_size) {
  if (num_tokens < 0 || num_kv_heads <= 0 || head_dim <= 0 || num_blocks < 0 ||
      block_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "WriteKvCache: bad sizes num_tokens=", num_tokens, " num_kv_heads=", num_kv_heads,
        " head_dim=", head_dim, " num_blocks=", num_blocks, " block_size=", block_size));
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
  const size_t head_bytes = static_cast<size_t>(head_dim) * sizeof(float);
  const int64_t head_floats = head_dim * block_size;  // one (block, kv head)
  for (int64_t t = 0; t < num_tokens; ++t) {
    const int64_t slot = slot_mapping[t];
    if (slot < 0) continue;
    const int64_t block = slot / block_size, offset = slot % block_size;
    for (int64_t g = 0; g < num_kv_heads; ++g) {
      const int64_t base = (block * num_kv_heads + g) * head_floats;
      // K transposed: element i of this key at [i, offset] of the [d, bs] tile.
      const float* kt = k + t * k_stride + g * head_dim;
      float* kdst = k_cache + base + offset;
      for (int64_t i = 0; i < head_dim; ++i) kdst[i * block_size] = kt[i];
      std::memcpy(v_cache + base + offset * head_dim, v + t * v_stride + g * head_dim, head_bytes);
    }
  }
  return absl::OkStatus();
}

}  // namespace kestrel::kernels::cpu
