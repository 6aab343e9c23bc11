#include "model/shard.h"

#include <catch2/catch.hpp>

namespace kestrel::model {
namespace {

ModelConfig Config(int64_t heads, int64_t kv_heads, int64_t intermediate, int64_t vocab) {
  ModelConfig c;
  c.num_attention_heads = heads;
  c.num_key_value_heads = kv_heads;
  c.head_dim = 8;
  c.intermediate_size = intermediate;
  c.vocab_size = vocab;
  return c;
}

TEST_CASE("ranks split heads, KV heads, the MLP and the vocabulary", "[shard]") {
  const ModelConfig c = Config(8, 4, 172, 513);
  int64_t vocab = 0;
  for (int r = 0; r < 2; ++r) {
    auto s = ComputeShard(c, r, 2);
    REQUIRE(s.ok());
    CHECK(s->num_q_heads == 4);
    CHECK(s->q_head_begin == 4 * r);
    CHECK(s->num_kv_heads == 2);
    CHECK(s->kv_head_begin == 2 * r);
    CHECK(s->intermediate == 86);
    CHECK(s->intermediate_begin == 86 * r);
    CHECK(s->vocab_begin == vocab);
    vocab += s->vocab_count;
  }
  CHECK(vocab == 513);  // an odd vocabulary is split unevenly, not refused
}

TEST_CASE("fewer KV heads than ranks: each rank holds the KV head its queries read",
          "[shard]") {
  // 8 query heads, 2 KV heads (4 queries each), 4 ranks of 2 query heads.
  const ModelConfig c = Config(8, 2, 16, 32);
  const int64_t expected[] = {0, 0, 1, 1};
  for (int r = 0; r < 4; ++r) {
    auto s = ComputeShard(c, r, 4);
    REQUIRE(s.ok());
    CHECK(s->num_kv_heads == 1);
    CHECK(s->kv_head_begin == expected[r]);
    // Query head q reads KV head q / (heads / kv_heads).
    CHECK(s->q_head_begin / 4 == s->kv_head_begin);
    CHECK((s->q_head_begin + s->num_q_heads - 1) / 4 == s->kv_head_begin);
  }
}

TEST_CASE("shapes that do not divide name the dimension and value", "[shard]") {
  auto heads = ComputeShard(Config(6, 6, 16, 32), 0, 4);
  REQUIRE(!heads.ok());
  CHECK(std::string(heads.status().message()).find("num_attention_heads (6)") !=
        std::string::npos);
  auto mlp = ComputeShard(Config(8, 8, 172, 32), 0, 8);
  REQUIRE(!mlp.ok());
  CHECK(std::string(mlp.status().message()).find("intermediate_size (172)") != std::string::npos);
  auto kv = ComputeShard(Config(12, 3, 24, 32), 0, 4);
  REQUIRE(!kv.ok());
  CHECK(std::string(kv.status().message()).find("num_key_value_heads (3)") != std::string::npos);
  CHECK(!ComputeShard(Config(8, 8, 16, 32), 2, 2).ok());
  CHECK(!ComputeShard(Config(8, 8, 16, 32), 0, 0).ok());
}

}  // namespace
}  // namespace kestrel::model
