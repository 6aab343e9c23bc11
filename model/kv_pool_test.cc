#include "model/kv_pool.h"

#include <catch2/catch.hpp>

#include "kernels/cpu/cpu_backend.h"

namespace kestrel::model {
namespace {

kernels::Device* CpuDevice() {
  static kernels::Backend* backend = kernels::cpu::CreateCpuBackend({.num_threads = 1})->release();
  return &backend->device();
}

TEST_CASE("pool takes as many whole blocks as the budget holds", "[kv_pool]") {
  // One block: 2 (K,V) * 3 layers * 16 tokens * 2 heads * 8 dims * 4 bytes = 6144 bytes.
  auto pool = KvPool::Create({.num_layers = 3, .num_kv_heads = 2, .head_dim = 8,
                              .block_size = 16, .memory_budget_bytes = 6144 * 10 + 100}, CpuDevice());
  REQUIRE(pool.ok());
  CHECK((*pool)->bytes_per_block() == 6144);
  CHECK((*pool)->num_blocks() == 10);
  CHECK((*pool)->dtype() == kernels::DType::kF32);
  // Layers and K/V are disjoint, back to back.
  const int64_t layer_floats = 10 * 16 * 2 * 8;
  auto k = [&](int64_t l) { return static_cast<float*>((*pool)->k(l)); };
  auto v = [&](int64_t l) { return static_cast<float*>((*pool)->v(l)); };
  CHECK(v(0) - k(0) == layer_floats);
  CHECK(k(1) - v(0) == layer_floats);
  v(2)[layer_floats - 1] = 1.0f;  // last float is writable
  CHECK((*pool)->num_arrays() == 6);
  CHECK((*pool)->array_stride() == layer_floats * 4);
  CHECK(static_cast<void*>((*pool)->base()) == (*pool)->k(0));
}

TEST_CASE("a BF16 pool fits twice the blocks in the same budget", "[kv_pool]") {
  auto pool = KvPool::Create({.num_layers = 3, .num_kv_heads = 2, .head_dim = 8,
                              .block_size = 16, .memory_budget_bytes = 6144 * 10 + 100,
                              .dtype = kernels::DType::kBF16}, CpuDevice());
  REQUIRE(pool.ok());
  CHECK((*pool)->bytes_per_block() == 3072);
  CHECK((*pool)->num_blocks() == 20);
  CHECK((*pool)->block_bytes() == 16 * 2 * 8 * 2);
  auto* k0 = static_cast<uint16_t*>((*pool)->k(0));
  auto* v2 = static_cast<uint16_t*>((*pool)->v(2));
  CHECK(static_cast<uint16_t*>((*pool)->v(0)) - k0 == 20 * 16 * 2 * 8);
  v2[20 * 16 * 2 * 8 - 1] = 1;  // last element is writable
  auto f16 = KvPool::Create({.num_layers = 1, .num_kv_heads = 1, .head_dim = 8,
                             .dtype = kernels::DType::kF16}, CpuDevice());
  REQUIRE_FALSE(f16.ok());
  CHECK(f16.status().message() == "kv pool: dtype F16 is not supported (F32 or BF16)");
}

TEST_CASE("budget below one block and bad shapes are errors", "[kv_pool]") {
  auto small = KvPool::Create({.num_layers = 1, .num_kv_heads = 1, .head_dim = 8,
                               .block_size = 16, .memory_budget_bytes = 100}, CpuDevice());
  REQUIRE_FALSE(small.ok());
  CHECK(small.status().message() ==
        "kv pool: memory_budget_bytes 100 is smaller than one block (1024 bytes)");
  auto bad = KvPool::Create({.num_layers = 0, .num_kv_heads = 1, .head_dim = 8}, CpuDevice());
  CHECK_FALSE(bad.ok());
  CHECK_FALSE(KvPool::Create({.num_layers = 1, .num_kv_heads = 1, .head_dim = 8}, nullptr).ok());
}

}  // namespace
}  // namespace kestrel::model
