// Block pool bookkeeping: intrusive free list in LRU order, reference counts,
// block tables, copy-on-write and the prefix-hash cache.
#include "scheduler/block_manager.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace kestrel::scheduler {
namespace {

// splitmix64's finalizer: cheap, and every input bit affects every output
// bit, which a chain of xors alone would not give.
inline uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

BlockHash BlockManager::RootHash(std::string_view cache_salt) {
  // FNV-1a over the salt, then mixed; the empty salt gets a fixed root.
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : cache_salt) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return Mix(h ^ (cache_salt.size() << 1));
}

BlockHash BlockManager::ChainHash(BlockHash parent,
                                  absl::Span<const TokenId> block_tokens) {
  uint64_t h = Mix(parent ^ 0x5bd1e9955bd1e995ULL);
  for (TokenId t : block_tokens) h = Mix(h ^ static_cast<uint32_t>(t));
  return h;
}

void BlockManager::ExtendBlockHashes(absl::Span<const TokenId> tokens,
                                     BlockHash root,
                                     std::vector<BlockHash>* hashes) const {
  const size_t bs = options_.block_size;
  const size_t full = tokens.size() / bs;
  for (size_t i = hashes->size(); i < full; ++i) {
    const BlockHash parent = i == 0 ? root : (*hashes)[i - 1];
    hashes->push_back(ChainHash(parent, tokens.subspan(i * bs, bs)));
  }
}

absl::StatusOr<std::unique_ptr<BlockManager>> BlockManager::Create(
    const Options& options) {
  if (options.num_blocks <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "BlockManager::Options.num_blocks must be > 0, got ", options.num_blocks));
  }
  if (options.block_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "BlockManager::Options.block_size must be > 0, got ", options.block_size));
  }
  return std::unique_ptr<BlockManager>(new BlockManager(options));
}

BlockManager::BlockManager(const Options& options)
    : options_(options), blocks_(options.num_blocks) {
  for (BlockId b = 0; b < options_.num_blocks; ++b) PushBack(b);
}

void BlockManager::PushFront(BlockId b) {
  blocks_[b].prev = -1;
  blocks_[b].next = head_;
  if (head_ >= 0) blocks_[head_].prev = b;
  head_ = b;
  if (tail_ < 0) tail_ = b;
  ++num_free_;
}

void BlockManager::PushBack(BlockId b) {
  blocks_[b].next = -1;
  blocks_[b].prev = tail_;
  if (tail_ >= 0) blocks_[tail_].next = b;
  tail_ = b;
  if (head_ < 0) head_ = b;
  ++num_free_;
}

void BlockManager::Unlink(BlockId b) {
  Block& blk = blocks_[b];
  if (blk.prev >= 0) {
    blocks_[blk.prev].next = blk.next;
  } else {
    head_ = blk.next;
  }
  if (blk.next >= 0) {
    blocks_[blk.next].prev = blk.prev;
  } else {
    tail_ = blk.prev;
  }
  blk.prev = blk.next = -1;
  --num_free_;
}

BlockId BlockManager::PopFree() {
  const BlockId b = head_;
  Unlink(b);
  Block& blk = blocks_[b];
  if (blk.has_hash) {
    cache_.erase(blk.hash);
    blk.has_hash = false;
    ++counters_.evictions;
  }
  return b;
}

void BlockManager::Ref(BlockId b) {
  if (blocks_[b].ref_count++ == 0) Unlink(b);
}

void BlockManager::Unref(BlockId b) {
  if (--blocks_[b].ref_count > 0) return;
  if (blocks_[b].has_hash) {
    PushBack(b);
  } else {
    PushFront(b);
  }
}

int BlockManager::FindCachedPrefix(absl::Span<const BlockHash> hashes) const {
  if (!options_.enable_prefix_caching) return 0;
  int n = 0;
  for (BlockHash h : hashes) {
    if (!cache_.contains(h)) break;
    ++n;
  }
  return n;
}

int BlockManager::BlocksNeededForNewSequence(
    absl::Span<const BlockHash> hit_hashes, int num_tokens) const {
  const int hits = static_cast<int>(hit_hashes.size());
  int needed = std::max(0, BlocksFor(num_tokens) - hits);
  for (BlockHash h : hit_hashes) {
    auto it = cache_.find(h);
    if (it != cache_.end() && blocks_[it->second].ref_count == 0) ++needed;
  }
  return needed;
}

int BlockManager::BlocksNeededToAppend(SequenceId seq, int first_write_pos,
                                       int num_tokens) const {
  return NeededToAppend(tables_.at(seq), first_write_pos, num_tokens);
}

int BlockManager::NeededToAppend(const Table& t, int first_write_pos,
                                 int num_tokens) const {
  const int have = static_cast<int>(t.blocks.size());
  int needed = std::max(0, BlocksFor(num_tokens) - have);
  const int write_block = first_write_pos / options_.block_size;
  if (write_block < have && blocks_[t.blocks[write_block]].ref_count > 1) {
    ++needed;
  }
  return needed;
}

int BlockManager::MaxCoverableTokens(SequenceId seq, int first_write_pos) const {
  const Table& t = tables_.at(seq);
  const int have = static_cast<int>(t.blocks.size());
  int usable = num_free_;
  const int write_block = first_write_pos / options_.block_size;
  if (write_block < have && blocks_[t.blocks[write_block]].ref_count > 1) {
    // The copy-on-write replacement comes out of the free pool first.
    if (usable == 0) return first_write_pos;
    --usable;
  }
  return (have + usable) * options_.block_size;
}

absl::StatusOr<absl::Span<const BlockId>> BlockManager::AllocateSequence(
    SequenceId seq, absl::Span<const BlockHash> hit_hashes,
    int num_query_blocks, int num_tokens) {
  if (tables_.contains(seq)) {
    return absl::AlreadyExistsError(
        absl::StrCat("sequence ", seq, " already has a block table"));
  }
  const int needed = BlocksNeededForNewSequence(hit_hashes, num_tokens);
  if (needed > num_free_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "sequence ", seq, " needs ", needed, " free KV blocks, ", num_free_,
        " available"));
  }
  Table& t = tables_[seq];
  t.blocks.reserve(std::max<int>(BlocksFor(num_tokens), hit_hashes.size()));
  // Take references on the hits first so the fresh allocations below cannot
  // evict them.
  for (BlockHash h : hit_hashes) {
    const BlockId b = cache_.at(h);
    Ref(b);
    t.blocks.push_back(b);
  }
  t.num_cached = static_cast<int>(hit_hashes.size());
  while (static_cast<int>(t.blocks.size()) < BlocksFor(num_tokens)) {
    const BlockId b = PopFree();
    blocks_[b].ref_count = 1;
    t.blocks.push_back(b);
  }
  if (options_.enable_prefix_caching) {
    counters_.prefix_query_blocks += num_query_blocks;
    counters_.prefix_hit_blocks += static_cast<int64_t>(hit_hashes.size());
  }
  return absl::Span<const BlockId>(t.blocks);
}

absl::StatusOr<absl::Span<const BlockId>> BlockManager::AppendSlots(
    SequenceId seq, int first_write_pos, int num_tokens,
    std::vector<BlockCopy>* copies) {
  auto it = tables_.find(seq);
  if (it == tables_.end()) {
    return absl::NotFoundError(absl::StrCat("sequence ", seq, " has no block table"));
  }
  Table& t = it->second;
  const int needed = NeededToAppend(t, first_write_pos, num_tokens);
  if (needed > num_free_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "sequence ", seq, " needs ", needed, " free KV blocks, ", num_free_,
        " available"));
  }
  const size_t write_block = first_write_pos / options_.block_size;
  if (write_block < t.blocks.size() && blocks_[t.blocks[write_block]].ref_count > 1) {
    // Another sequence still reads this block, so writing into it in place
    // would corrupt that sequence's KV.
    const BlockId src = t.blocks[write_block];
    const BlockId dst = PopFree();
    blocks_[dst].ref_count = 1;
    Unref(src);
    t.blocks[write_block] = dst;
    if (t.num_cached > static_cast<int>(write_block)) {
      t.num_cached = static_cast<int>(write_block);
    }
    copies->push_back({src, dst});
    ++counters_.cow_copies;
  }
  while (static_cast<int>(t.blocks.size()) < BlocksFor(num_tokens)) {
    const BlockId b = PopFree();
    blocks_[b].ref_count = 1;
    t.blocks.push_back(b);
  }
  return absl::Span<const BlockId>(t.blocks);
}

void BlockManager::CacheFullBlocks(SequenceId seq,
                                   absl::Span<const BlockHash> hashes,
                                   int num_full_blocks) {
  if (!options_.enable_prefix_caching) return;
  auto it = tables_.find(seq);
  if (it == tables_.end()) return;
  Table& t = it->second;
  const int limit = std::min<int>(
      {num_full_blocks, static_cast<int>(hashes.size()),
       static_cast<int>(t.blocks.size())});
  for (int i = t.num_cached; i < limit; ++i) {
    Block& blk = blocks_[t.blocks[i]];
    if (blk.has_hash) continue;  // a prefix hit or a block shared by a fork
    // Two sequences that computed the same prefix concurrently: the block
    // cached first stays canonical and this one is plain.
    if (cache_.try_emplace(hashes[i], t.blocks[i]).second) {
      blk.has_hash = true;
      blk.hash = hashes[i];
    }
  }
  t.num_cached = std::max(t.num_cached, limit);
}

absl::Status BlockManager::Fork(SequenceId parent, SequenceId child) {
  auto it = tables_.find(parent);
  if (it == tables_.end()) {
    return absl::NotFoundError(absl::StrCat("sequence ", parent, " has no block table"));
  }
  if (tables_.contains(child)) {
    return absl::AlreadyExistsError(
        absl::StrCat("sequence ", child, " already has a block table"));
  }
  Table copy = it->second;  // copied before the insert below can rehash
  for (BlockId b : copy.blocks) Ref(b);
  tables_.emplace(child, std::move(copy));
  return absl::OkStatus();
}

void BlockManager::TrimSlots(SequenceId seq, int num_tokens) {
  auto it = tables_.find(seq);
  if (it == tables_.end()) return;
  Table& t = it->second;
  const size_t keep = static_cast<size_t>(BlocksFor(num_tokens));
  while (t.blocks.size() > keep) {
    Unref(t.blocks.back());
    t.blocks.pop_back();
  }
  t.num_cached = std::min<int>(t.num_cached, static_cast<int>(t.blocks.size()));
}

void BlockManager::Free(SequenceId seq) {
  auto it = tables_.find(seq);
  if (it == tables_.end()) return;
  // Release the tail first: the cached blocks then sit in the LRU with the
  // prefix root most recent, so eviction eats a chain from its end and the
  // shared beginning survives longest.
  const std::vector<BlockId>& blocks = it->second.blocks;
  for (auto b = blocks.rbegin(); b != blocks.rend(); ++b) Unref(*b);
  tables_.erase(it);
}

absl::Span<const BlockId> BlockManager::BlockTable(SequenceId seq) const {
  auto it = tables_.find(seq);
  if (it == tables_.end()) return {};
  return it->second.blocks;
}

absl::Status BlockManager::CheckInvariants() const {
  std::vector<int> refs(options_.num_blocks, 0);
  // Which table last touched each block, to catch a table holding one twice.
  std::vector<int> seen_in(options_.num_blocks, -1);
  int table_index = 0;
  for (const auto& [seq, t] : tables_) {
    for (BlockId b : t.blocks) {
      if (b < 0 || b >= options_.num_blocks) {
        return absl::InternalError(absl::StrCat("sequence ", seq, " holds bad block ", b));
      }
      if (seen_in[b] == table_index) {
        return absl::InternalError(
            absl::StrCat("sequence ", seq, " holds block ", b, " twice"));
      }
      seen_in[b] = table_index;
      ++refs[b];
    }
    ++table_index;
  }
  int unreferenced = 0;
  for (BlockId b = 0; b < options_.num_blocks; ++b) {
    if (blocks_[b].ref_count != refs[b]) {
      return absl::InternalError(absl::StrCat("block ", b, " has ref_count ",
                                              blocks_[b].ref_count, " but ",
                                              refs[b], " tables hold it"));
    }
    if (refs[b] == 0) ++unreferenced;
  }
  std::vector<bool> on_list(options_.num_blocks, false);
  int listed = 0;
  BlockId prev = -1;
  for (BlockId b = head_; b >= 0; b = blocks_[b].next) {
    if (on_list[b]) return absl::InternalError(absl::StrCat("free list loops at ", b));
    if (blocks_[b].prev != prev) {
      return absl::InternalError(absl::StrCat("free list back link broken at ", b));
    }
    if (blocks_[b].ref_count != 0) {
      return absl::InternalError(absl::StrCat("referenced block ", b, " is on the free list"));
    }
    on_list[b] = true;
    ++listed;
    prev = b;
  }
  if (prev != tail_) return absl::InternalError("free list tail is wrong");
  if (listed != unreferenced || listed != num_free_) {
    return absl::InternalError(absl::StrCat("free list holds ", listed,
                                            " blocks, num_free_ is ", num_free_,
                                            ", unreferenced blocks ", unreferenced));
  }
  int hashed = 0;
  for (BlockId b = 0; b < options_.num_blocks; ++b) {
    if (!blocks_[b].has_hash) continue;
    ++hashed;
    auto it = cache_.find(blocks_[b].hash);
    if (it == cache_.end() || it->second != b) {
      return absl::InternalError(absl::StrCat("block ", b, " has a hash the cache does not map to it"));
    }
  }
  if (hashed != static_cast<int>(cache_.size())) {
    return absl::InternalError("cache maps hashes of blocks without hashes");
  }
  return absl::OkStatus();
}

}  // namespace kestrel::scheduler
