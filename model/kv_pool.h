// The preallocated paged KV cache the model runner reads and writes: per
// layer a K and a V array of num_blocks * block_size * num_kv_heads *
// head_dim elements, F32 or BF16 (layout in docs/kv_cache.md), carved out
// of one device allocation sized from a memory budget. Which blocks belong
// to which sequence is the scheduler's business; the pool only holds the
// memory.
#ifndef KESTREL_MODEL_KV_POOL_H_
#define KESTREL_MODEL_KV_POOL_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "kernels/device.h"
#include "kernels/dtype.h"

namespace kestrel::model {

// Owns the memory; the runner writes through k()/v(). Thread-compatible: the
// single step thread uses it.
class KvPool {
 public:
  struct Options {
    int64_t num_layers = 0;
    int64_t num_kv_heads = 0;
    int64_t head_dim = 0;
    // Tokens per block (16 everywhere today).
    int64_t block_size = 16;
    // Total bytes for K and V over all layers; the pool takes as many whole
    // blocks as fit. Must hold at least one block.
    uint64_t memory_budget_bytes = 256ull << 20;
    // Element type: kF32, or kBF16 (half the bytes, so twice the blocks).
    kernels::DType dtype = kernels::DType::kF32;
  };

  // Allocates the pool on `device` (not owned; must outlive the pool). Its
  // contents start undefined: attention never reads a slot before it is
  // written.
  static absl::StatusOr<std::unique_ptr<KvPool>> Create(const Options& options,
                                                        kernels::Device* device);
  KvPool(const KvPool&) = delete;
  KvPool& operator=(const KvPool&) = delete;

  int64_t num_blocks() const { return num_blocks_; }
  int64_t block_size() const { return options_.block_size; }
  // Bytes one block takes over all layers (K and V).
  uint64_t bytes_per_block() const;

  int64_t num_layers() const { return options_.num_layers; }
  kernels::DType dtype() const { return options_.dtype; }
  // Bytes of one block in one layer's K (or V) array.
  int64_t block_bytes() const {
    return options_.block_size * options_.num_kv_heads * options_.head_dim *
           kernels::DTypeSize(options_.dtype);
  }

  // The layer's cache (device memory), each block contiguous, elements of
  // dtype(): K [num_blocks, num_kv_heads, head_dim, block_size], V
  // [num_blocks, num_kv_heads, block_size, head_dim].
  void* k(int64_t layer) { return base() + (2 * layer) * layer_bytes_; }
  void* v(int64_t layer) { return base() + (2 * layer + 1) * layer_bytes_; }

  // The 2 * num_layers arrays (K0, V0, K1, V1, ...) start array_stride()
  // bytes apart from base(): what Ops::CopyBlocks walks.
  char* base() { return memory_.as<char>(); }
  int64_t num_arrays() const { return 2 * options_.num_layers; }
  int64_t array_stride() const { return layer_bytes_; }

 private:
  KvPool() = default;

  Options options_;
  int64_t num_blocks_ = 0;
  int64_t layer_bytes_ = 0;  // bytes of one layer's K (or V) array
  kernels::DeviceBuffer memory_;  // 2 * num_layers * layer_bytes_
};

}  // namespace kestrel::model

#endif  // KESTREL_MODEL_KV_POOL_H_
