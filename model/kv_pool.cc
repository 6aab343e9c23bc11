#include "model/kv_pool.h"

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace kestrel::model {

uint64_t KvPool::bytes_per_block() const {
  return 2 * static_cast<uint64_t>(options_.num_layers * block_bytes());
}

absl::StatusOr<std::unique_ptr<KvPool>> KvPool::Create(const Options& options,
                                                       kernels::Device* device) {
  if (device == nullptr) return absl::InvalidArgumentError("kv pool: no device");
  if (options.num_layers <= 0 || options.num_kv_heads <= 0 || options.head_dim <= 0 ||
      options.block_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv pool: num_layers, num_kv_heads, head_dim and block_size must be "
                     "positive, got ",
                     options.num_layers, ", ", options.num_kv_heads, ", ", options.head_dim,
                     ", ", options.block_size));
  }
  if (options.dtype != kernels::DType::kF32 && options.dtype != kernels::DType::kBF16) {
    return absl::InvalidArgumentError(absl::StrCat("kv pool: dtype ",
                                                   std::string(kernels::DTypeName(options.dtype)),
                                                   " is not supported (F32 or BF16)"));
  }
  std::unique_ptr<KvPool> pool(new KvPool());
  pool->options_ = options;
  const uint64_t per_block = pool->bytes_per_block();
  pool->num_blocks_ = static_cast<int64_t>(options.memory_budget_bytes / per_block);
  if (pool->num_blocks_ < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "kv pool: memory_budget_bytes ", options.memory_budget_bytes,
        " is smaller than one block (", per_block, " bytes)"));
  }
  pool->layer_bytes_ = pool->num_blocks_ * pool->block_bytes();
  // On the CPU a large allocation is an anonymous mapping: zero-filled on
  // first touch, so an unused budget costs no resident memory.
  ASSIGN_OR_RETURN(pool->memory_,
                   device->Allocate(static_cast<size_t>(pool->num_blocks_) * per_block,
                                    "the KV cache"));
  return pool;
}

}  // namespace kestrel::model
