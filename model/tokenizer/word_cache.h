// A bounded, thread-safe cache from a pre-tokenized word to its token ids.
// Natural text repeats a small set of words, so after warm-up most words skip
// the BPE merge loop entirely.
#ifndef KESTREL_MODEL_TOKENIZER_WORD_CACHE_H_
#define KESTREL_MODEL_TOKENIZER_WORD_CACHE_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace kestrel::tokenizer {

// Thread-safe. The key space is split over kShards independently locked
// shards (reader/writer mutexes), so request threads contend only when they
// hit the same shard at the same time; there is no global lock. A shard that
// reaches its share of the capacity is cleared: cheap, and it lets the cache
// follow a changing workload, which a "stop inserting when full" cache
// cannot.
class WordCache {
 public:
  // `capacity` bounds the number of cached words (0 disables the cache).
  explicit WordCache(size_t capacity);
  WordCache(const WordCache&) = delete;
  WordCache& operator=(const WordCache&) = delete;

  // Appends the cached ids of `word` to `ids` and returns true on a hit.
  bool Lookup(std::string_view word, std::vector<int32_t>* ids) const;
  void Insert(std::string_view word, const std::vector<int32_t>& ids);

  // Words longer than this are not cached: they are rare, and would let one
  // request fill the cache with huge keys.
  static constexpr size_t kMaxWordBytes = 256;

 private:
  static constexpr size_t kShards = 64;
  struct Shard {
    mutable absl::Mutex mu;
    absl::flat_hash_map<std::string, std::vector<int32_t>> map ABSL_GUARDED_BY(mu);
  };
  Shard& ShardFor(std::string_view word) const;

  // Constant after construction.
  const size_t per_shard_capacity_;
  // Each shard is protected by its own mutex.
  mutable std::array<Shard, kShards> shards_;
};

}  // namespace kestrel::tokenizer

#endif  // KESTREL_MODEL_TOKENIZER_WORD_CACHE_H_
