// The paged KV block pool: free list, reference counts, per-sequence block
// tables, copy-on-write forks and the prefix cache. The layout and the hash
// chain are written up in docs/scheduler.md.
#ifndef KESTREL_SCHEDULER_BLOCK_MANAGER_H_
#define KESTREL_SCHEDULER_BLOCK_MANAGER_H_

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "scheduler/request.h"

namespace kestrel::scheduler {

// Index of a physical KV block in the pool, in [0, num_blocks).
using BlockId = int32_t;
// Chained hash of a full block: covers every token from position 0 to the
// block's end, plus the cache salt.
using BlockHash = uint64_t;

// The runner must copy the KV of block `src` into block `dst` before running
// the step that reported it (copy-on-write of a shared, partially filled block).
struct BlockCopy {
  BlockId src = 0;
  BlockId dst = 0;
};

// Owns the accounting of a fixed pool of KV blocks (never the KV memory
// itself, which the model runner allocates with the same geometry).
//
// Every block is in exactly one of three states:
//   used       ref_count > 0: in the block table of ref_count sequences;
//   cached     ref_count == 0 with a hash: on the free list, still findable by
//              prefix lookup until evicted;
//   free       ref_count == 0 without a hash: on the free list.
// The free list is ordered for allocation: plain free blocks first, then cached
// blocks from least to most recently freed, so allocation evicts LRU.
//
// Example: block_size 4, sequence A with tokens [a b c d e]:
//   AllocateSequence(A, {}, 0, 5)   -> table [7 3]   (7 full, 3 holds "e")
//   CacheFullBlocks(A, {h(abcd)}, 1) -> block 7 findable by h(abcd)
//   Fork(A, B)                        -> table B [7 3]; ref counts 2, 2
//   AppendSlots(B, 5, 6, &copies)     -> block 3 is shared and B writes
//                                        position 5 into it: B gets [7 9],
//                                        copies = {3 -> 9}
//   Free(A), Free(B)                  -> 3, 9 free; 7 cached (LRU)
//
// Not thread-safe: the scheduler owns it and is itself single-threaded.
class BlockManager {
 public:
  struct Options {
    // Blocks in the pool; > 0. Size it from the KV memory budget.
    int num_blocks = 0;
    // Tokens per block; > 0. 16 balances table size against waste in the
    // last, partially filled block.
    int block_size = 16;
    // Keep freed full blocks findable by their prefix hash.
    bool enable_prefix_caching = true;
  };

  // Monotonic counters since Create.
  struct Counters {
    // Full prompt blocks looked up at admission, and how many were found.
    int64_t prefix_query_blocks = 0;
    int64_t prefix_hit_blocks = 0;
    // Cached blocks whose hash was dropped to reuse the block.
    int64_t evictions = 0;
    // Copy-on-write block copies handed to the runner.
    int64_t cow_copies = 0;
  };

  static absl::StatusOr<std::unique_ptr<BlockManager>> Create(
      const Options& options);

  BlockManager(const BlockManager&) = delete;
  BlockManager& operator=(const BlockManager&) = delete;

  // ---- Prefix hashes. Pure functions; stable across processes. ----

  // The start of a hash chain; a non-empty salt gives a disjoint cache.
  static BlockHash RootHash(std::string_view cache_salt);
  // Hash of one full block given the hash of everything before it.
  static BlockHash ChainHash(BlockHash parent,
                             absl::Span<const TokenId> block_tokens);
  // Appends to `hashes` the hash of every full block of `tokens` it does not
  // hold yet. Incremental so decodes hash each block once.
  void ExtendBlockHashes(absl::Span<const TokenId> tokens, BlockHash root,
                         std::vector<BlockHash>* hashes) const;

  // ---- Queries (no state change). ----

  // Number of leading `hashes` whose blocks are in the cache. 0 when prefix
  // caching is off.
  int FindCachedPrefix(absl::Span<const BlockHash> hashes) const;
  // Free-pool blocks AllocateSequence would consume: fresh blocks beyond the
  // hits plus hit blocks that are currently unreferenced (cached, free).
  int BlocksNeededForNewSequence(absl::Span<const BlockHash> hit_hashes,
                                 int num_tokens) const;
  // Free-pool blocks AppendSlots(seq, first_write_pos, num_tokens) would
  // consume, including a copy-on-write of the block at first_write_pos.
  // REQUIRES: HasSequence(seq).
  int BlocksNeededToAppend(SequenceId seq, int first_write_pos,
                           int num_tokens) const;
  // Most tokens the table can cover if given every free block.
  // REQUIRES: HasSequence(seq).
  int MaxCoverableTokens(SequenceId seq, int first_write_pos) const;

  // ---- Mutations. ----

  // Creates `seq`'s table: the blocks of the first hit_hashes.size() hashes
  // (all found by FindCachedPrefix), then fresh blocks up to num_tokens.
  // `num_query_blocks` only feeds the hit-rate counters.
  // Fails with RESOURCE_EXHAUSTED (state unchanged) if the pool is short.
  // REQUIRES: !HasSequence(seq); every hit hash is cached.
  // Returns the new table (valid until the next mutation of `seq`).
  absl::StatusOr<absl::Span<const BlockId>> AllocateSequence(SequenceId seq,
                                absl::Span<const BlockHash> hit_hashes,
                                int num_query_blocks, int num_tokens);
  // Grows `seq`'s table to cover num_tokens and makes the block holding
  // first_write_pos exclusive, appending the copy to `copies` if needed.
  // Fails with RESOURCE_EXHAUSTED (state unchanged) if the pool is short.
  // Returns the grown table (valid until the next mutation of `seq`).
  absl::StatusOr<absl::Span<const BlockId>> AppendSlots(
      SequenceId seq, int first_write_pos, int num_tokens,
      std::vector<BlockCopy>* copies);
  // Returns the blocks of `seq`'s table beyond those covering num_tokens to
  // the pool (speculative decoding: slots reserved for rejected drafts).
  // REQUIRES: the dropped blocks are not in the cache (hold no committed KV).
  void TrimSlots(SequenceId seq, int num_tokens);
  // Makes the first `num_full_blocks` blocks of `seq` findable by `hashes`.
  // A hash already cached in another block is left alone (that block wins).
  // REQUIRES: hashes.size() >= num_full_blocks; those blocks hold computed KV.
  void CacheFullBlocks(SequenceId seq, absl::Span<const BlockHash> hashes,
                       int num_full_blocks);
  // `child` gets a copy of `parent`'s table; every block gains a reference.
  absl::Status Fork(SequenceId parent, SequenceId child);
  // Drops `seq`'s table. Hashed blocks stay cached until evicted. No-op for an
  // unknown sequence, so abort paths need not check.
  void Free(SequenceId seq);

  // ---- Observers. ----
  bool HasSequence(SequenceId seq) const { return tables_.contains(seq); }
  // Valid until the next mutation of `seq`; empty for an unknown sequence.
  absl::Span<const BlockId> BlockTable(SequenceId seq) const;
  int num_blocks() const { return options_.num_blocks; }
  int block_size() const { return options_.block_size; }
  bool prefix_caching_enabled() const { return options_.enable_prefix_caching; }
  // Allocatable blocks: free plus cached-but-unreferenced.
  int num_free_blocks() const { return num_free_; }
  int num_used_blocks() const { return options_.num_blocks - num_free_; }
  // Blocks with a hash, referenced or not.
  int num_cached_blocks() const { return static_cast<int>(cache_.size()); }
  int num_sequences() const { return static_cast<int>(tables_.size()); }
  int ref_count(BlockId block) const { return blocks_[block].ref_count; }
  const Counters& counters() const { return counters_; }

  // O(num_blocks + total table length) consistency check for tests: every
  // reference count equals the number of tables holding the block, no table
  // holds a block twice, the free list holds exactly the unreferenced blocks
  // once each, and the cache maps hashes to blocks carrying those hashes.
  absl::Status CheckInvariants() const;

 private:
  struct Block {
    int ref_count = 0;
    bool has_hash = false;
    BlockHash hash = 0;
    // Free-list links (block ids; kNil at the ends). Meaningful only while
    // ref_count == 0.
    BlockId prev = -1;
    BlockId next = -1;
  };

  explicit BlockManager(const Options& options);

  int BlocksFor(int num_tokens) const {
    return (num_tokens + options_.block_size - 1) / options_.block_size;
  }
  // Free-list primitives; O(1).
  void PushFront(BlockId b);
  void PushBack(BlockId b);
  void Unlink(BlockId b);
  struct Table;
  int NeededToAppend(const Table& t, int first_write_pos, int num_tokens) const;
  // Takes the first free-list block, evicting its hash if it has one.
  // REQUIRES: num_free_ > 0.
  BlockId PopFree();
  // Takes a reference; a block leaving ref_count 0 leaves the free list.
  void Ref(BlockId b);
  // Drops a reference; at 0 the block joins the free list (cached at the LRU
  // tail, plain at the head so plain blocks are reused before cached ones).
  void Unref(BlockId b);

  // Constant after construction.
  const Options options_;

  std::vector<Block> blocks_;
  // Free-list ends; -1 when empty.
  BlockId head_ = -1;
  BlockId tail_ = -1;
  int num_free_ = 0;
  absl::flat_hash_map<BlockHash, BlockId> cache_;
  struct Table {
    std::vector<BlockId> blocks;
    // Leading blocks already offered to the cache, so each block is hashed
    // into the cache once rather than on every decode.
    int num_cached = 0;
  };
  absl::flat_hash_map<SequenceId, Table> tables_;
  Counters counters_;
};

}  // namespace kestrel::scheduler

#endif  // KESTREL_SCHEDULER_BLOCK_MANAGER_H_
