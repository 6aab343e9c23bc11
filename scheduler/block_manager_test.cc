// Tests for the KV block pool: allocation, reference counts, copy-on-write,
// prefix caching with chained hashes and salts, LRU eviction, counters.
#include "scheduler/block_manager.h"

#include <numeric>
#include <vector>

#include <catch2/catch.hpp>

namespace kestrel::scheduler {
namespace {

std::unique_ptr<BlockManager> Make(int num_blocks, int block_size = 4,
                                   bool caching = true) {
  BlockManager::Options o;
  o.num_blocks = num_blocks;
  o.block_size = block_size;
  o.enable_prefix_caching = caching;
  auto bm = BlockManager::Create(o);
  REQUIRE(bm.ok());
  return std::move(bm).value();
}

std::vector<TokenId> Iota(int n, TokenId start = 0) {
  std::vector<TokenId> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

std::vector<BlockHash> Hashes(const BlockManager& bm, const std::vector<TokenId>& t,
                              std::string_view salt = "") {
  std::vector<BlockHash> h;
  bm.ExtendBlockHashes(t, BlockManager::RootHash(salt), &h);
  return h;
}

TEST_CASE("Create rejects bad options with the field name") {
  BlockManager::Options o;
  o.num_blocks = 0;
  auto bm = BlockManager::Create(o);
  REQUIRE_FALSE(bm.ok());
  CHECK_THAT(std::string(bm.status().message()),
             Catch::Contains("num_blocks must be > 0, got 0"));
  o.num_blocks = 4;
  o.block_size = -1;
  bm = BlockManager::Create(o);
  CHECK_THAT(std::string(bm.status().message()),
             Catch::Contains("block_size must be > 0, got -1"));
}

TEST_CASE("Allocate, append and free return every block") {
  auto bm = Make(8);
  REQUIRE(bm->AllocateSequence(1, {}, 0, 5).ok());  // 2 blocks
  CHECK(bm->BlockTable(1).size() == 2);
  CHECK(bm->num_free_blocks() == 6);
  std::vector<BlockCopy> copies;
  REQUIRE(bm->AppendSlots(1, 5, 9, &copies).ok());  // 3 blocks
  CHECK(copies.empty());
  CHECK(bm->BlockTable(1).size() == 3);
  CHECK(bm->BlocksNeededToAppend(1, 9, 12) == 0);
  CHECK(bm->BlocksNeededToAppend(1, 12, 13) == 1);
  REQUIRE(bm->CheckInvariants().ok());
  bm->Free(1);
  CHECK(bm->num_free_blocks() == 8);
  CHECK(bm->num_used_blocks() == 0);
  REQUIRE(bm->CheckInvariants().ok());
  bm->Free(1);  // unknown: no-op
}

TEST_CASE("Allocation beyond the pool fails without side effects") {
  auto bm = Make(3);
  REQUIRE(bm->AllocateSequence(1, {}, 0, 8).ok());
  absl::Status s = bm->AllocateSequence(2, {}, 0, 8).status();
  CHECK(s.code() == absl::StatusCode::kResourceExhausted);
  CHECK_FALSE(bm->HasSequence(2));
  std::vector<BlockCopy> copies;
  CHECK(bm->AppendSlots(1, 8, 16, &copies).status().code() ==
        absl::StatusCode::kResourceExhausted);
  CHECK(bm->BlockTable(1).size() == 2);
  CHECK(bm->MaxCoverableTokens(1, 8) == 12);
  REQUIRE(bm->CheckInvariants().ok());
}

TEST_CASE("Fork shares blocks and copy-on-write splits the partial block") {
  auto bm = Make(8);
  REQUIRE(bm->AllocateSequence(1, {}, 0, 6).ok());  // [full, partial]
  auto parent = std::vector<BlockId>(bm->BlockTable(1).begin(), bm->BlockTable(1).end());
  REQUIRE(bm->Fork(1, 2).ok());
  CHECK(bm->ref_count(parent[0]) == 2);
  CHECK(bm->ref_count(parent[1]) == 2);
  CHECK(bm->num_used_blocks() == 2);
  CHECK(bm->BlocksNeededToAppend(2, 6, 7) == 1);
  std::vector<BlockCopy> copies;
  REQUIRE(bm->AppendSlots(2, 6, 7, &copies).ok());
  REQUIRE(copies.size() == 1);
  CHECK(copies[0].src == parent[1]);
  CHECK(bm->BlockTable(2)[0] == parent[0]);  // the full block stays shared
  CHECK(bm->BlockTable(2)[1] == copies[0].dst);
  CHECK(bm->ref_count(parent[1]) == 1);
  // The parent is now the only owner and writes in place.
  copies.clear();
  REQUIRE(bm->AppendSlots(1, 6, 7, &copies).ok());
  CHECK(copies.empty());
  CHECK(bm->counters().cow_copies == 1);
  REQUIRE(bm->CheckInvariants().ok());
  CHECK(bm->Fork(9, 10).code() == absl::StatusCode::kNotFound);
  CHECK(bm->Fork(1, 2).code() == absl::StatusCode::kAlreadyExists);
  bm->Free(1);
  bm->Free(2);
  CHECK(bm->num_free_blocks() == 8);
  REQUIRE(bm->CheckInvariants().ok());
}

TEST_CASE("Prefix cache: chained hashes reuse blocks of an equal prefix only") {
  auto bm = Make(16);
  const std::vector<TokenId> a = Iota(14);  // 3 full blocks + 2 tokens
  auto ha = Hashes(*bm, a);
  REQUIRE(ha.size() == 3);
  REQUIRE(bm->AllocateSequence(1, {}, 3, 14).ok());
  bm->CacheFullBlocks(1, ha, 3);
  CHECK(bm->num_cached_blocks() == 3);

  // Same first 8 tokens, then different: 2 hits, and the third block misses
  // even though its own tokens match, because its hash covers the prefix.
  std::vector<TokenId> b = a;
  b[9] = 999;
  auto hb = Hashes(*bm, b);
  CHECK(hb[0] == ha[0]);
  CHECK(hb[1] == ha[1]);
  CHECK(hb[2] != ha[2]);
  CHECK(bm->FindCachedPrefix(hb) == 2);
  std::vector<TokenId> c = a;
  c[1] = 999;  // differs in block 0: blocks 1.. cannot match either
  CHECK(bm->FindCachedPrefix(Hashes(*bm, c)) == 0);

  // Different salt: disjoint cache.
  CHECK(bm->FindCachedPrefix(Hashes(*bm, a, "tenant-b")) == 0);

  const int hits = bm->FindCachedPrefix(hb);
  // Hits are in use (ref 1), so only the fresh blocks count.
  CHECK(bm->BlocksNeededForNewSequence(absl::MakeSpan(hb).first(hits), 14) == 2);
  REQUIRE(bm->AllocateSequence(2, absl::MakeSpan(hb).first(hits), 3, 14).ok());
  CHECK(bm->BlockTable(2)[0] == bm->BlockTable(1)[0]);
  CHECK(bm->BlockTable(2)[1] == bm->BlockTable(1)[1]);
  CHECK(bm->BlockTable(2)[2] != bm->BlockTable(1)[2]);
  CHECK(bm->ref_count(bm->BlockTable(1)[0]) == 2);
  CHECK(bm->counters().prefix_query_blocks == 6);
  CHECK(bm->counters().prefix_hit_blocks == 2);
  REQUIRE(bm->CheckInvariants().ok());
}

TEST_CASE("Freed cached blocks stay findable and are evicted LRU") {
  auto bm = Make(4);
  const std::vector<TokenId> a = Iota(8);
  const std::vector<TokenId> b = Iota(8, 100);
  auto ha = Hashes(*bm, a);
  auto hb = Hashes(*bm, b);
  REQUIRE(bm->AllocateSequence(1, {}, 2, 8).ok());
  bm->CacheFullBlocks(1, ha, 2);
  bm->Free(1);
  REQUIRE(bm->AllocateSequence(2, {}, 2, 8).ok());  // takes the 2 plain blocks
  bm->CacheFullBlocks(2, hb, 2);
  bm->Free(2);
  CHECK(bm->num_free_blocks() == 4);
  CHECK(bm->num_cached_blocks() == 4);
  CHECK(bm->FindCachedPrefix(ha) == 2);

  // A cached-but-free hit costs a free block too.
  CHECK(bm->BlocksNeededForNewSequence(absl::MakeSpan(ha).first(2), 8) == 2);
  // LRU order is now a1 a0 b1 b0 (each sequence freed tail first). Reusing
  // a's two blocks takes them off the list; the one fresh block then evicts
  // the least recently freed remaining block, b's tail b1.
  REQUIRE(bm->AllocateSequence(3, absl::MakeSpan(ha).first(2), 2, 12).ok());
  CHECK(bm->counters().evictions == 1);
  CHECK(bm->FindCachedPrefix(hb) == 1);  // b's first block survived
  CHECK(bm->FindCachedPrefix(ha) == 2);
  REQUIRE(bm->CheckInvariants().ok());
}

TEST_CASE("Concurrent computation of one prefix keeps the first block canonical") {
  auto bm = Make(8);
  const std::vector<TokenId> a = Iota(4);
  auto h = Hashes(*bm, a);
  REQUIRE(bm->AllocateSequence(1, {}, 1, 4).ok());
  REQUIRE(bm->AllocateSequence(2, {}, 1, 4).ok());
  bm->CacheFullBlocks(1, h, 1);
  bm->CacheFullBlocks(2, h, 1);
  CHECK(bm->num_cached_blocks() == 1);
  REQUIRE(bm->CheckInvariants().ok());
  bm->Free(1);
  bm->Free(2);
  REQUIRE(bm->CheckInvariants().ok());
  CHECK(bm->FindCachedPrefix(h) == 1);
}

TEST_CASE("Prefix caching off never hits") {
  auto bm = Make(8, 4, /*caching=*/false);
  auto h = Hashes(*bm, Iota(8));
  REQUIRE(bm->AllocateSequence(1, {}, 2, 8).ok());
  bm->CacheFullBlocks(1, h, 2);
  CHECK(bm->num_cached_blocks() == 0);
  CHECK(bm->FindCachedPrefix(h) == 0);
}

}  // namespace
}  // namespace kestrel::scheduler
