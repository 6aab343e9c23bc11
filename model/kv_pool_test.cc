#include "model/kv_pool.h"

#include <catch2/catch.hpp>

namespace kestrel::model {
namespace {

TEST_CASE("pool takes as many whole blocks as the budget holds", "[kv_pool]") {
  // One block: 2 (K,V) * 3 layers * 16 tokens * 2 heads * 8 dims * 4 bytes = 6144 bytes.
  auto pool = KvPool::Create({.num_layers = 3, .num_kv_heads = 2, .head_dim = 8,
                              .block_size = 16, .memory_budget_bytes = 6144 * 10 + 100});
  REQUIRE(pool.ok());
  CHECK((*pool)->bytes_per_block() == 6144);
  CHECK((*pool)->num_blocks() == 10);
  // Layers and K/V are disjoint, back to back.
  const int64_t layer_floats = 10 * 16 * 2 * 8;
  CHECK((*pool)->v(0) - (*pool)->k(0) == layer_floats);
  CHECK((*pool)->k(1) - (*pool)->v(0) == layer_floats);
  (*pool)->v(2)[layer_floats - 1] = 1.0f;  // last float is writable
  CHECK((*pool)->k(0)[0] == 0.0f);
}

TEST_CASE("budget below one block and bad shapes are errors", "[kv_pool]") {
  auto small = KvPool::Create({.num_layers = 1, .num_kv_heads = 1, .head_dim = 8,
                               .block_size = 16, .memory_budget_bytes = 100});
  REQUIRE_FALSE(small.ok());
  CHECK(small.status().message() ==
        "kv pool: memory_budget_bytes 100 is smaller than one block (1024 bytes)");
  auto bad = KvPool::Create({.num_layers = 0, .num_kv_heads = 1, .head_dim = 8});
  CHECK_FALSE(bad.ok());
}

}  // namespace
}  // namespace kestrel::model
