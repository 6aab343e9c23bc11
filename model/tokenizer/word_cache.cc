#include "model/tokenizer/word_cache.h"

#include "absl/hash/hash.h"

namespace kestrel::tokenizer {

WordCache::WordCache(size_t capacity)
    : per_shard_capacity_(capacity == 0 ? 0 : (capacity + kShards - 1) / kShards) {}

WordCache::Shard& WordCache::ShardFor(std::string_view word) const {
  return shards_[absl::Hash<absl::string_view>{}(absl::string_view(word.data(), word.size())) % kShards];
}

bool WordCache::Lookup(std::string_view word, std::vector<int32_t>* ids) const {
  if (per_shard_capacity_ == 0 || word.size() > kMaxWordBytes) return false;
  Shard& shard = ShardFor(word);
  absl::ReaderMutexLock lock(&shard.mu);
  auto it = shard.map.find(absl::string_view(word.data(), word.size()));
  if (it == shard.map.end()) return false;
  ids->insert(ids->end(), it->second.begin(), it->second.end());
  return true;
}

void WordCache::Insert(std::string_view word, const std::vector<int32_t>& ids) {
  if (per_shard_capacity_ == 0 || word.size() > kMaxWordBytes) return;
  Shard& shard = ShardFor(word);
  absl::MutexLock lock(&shard.mu);
  if (shard.map.size() >= per_shard_capacity_) shard.map.clear();
  shard.map.emplace(word, ids);
}

}  // namespace kestrel::tokenizer
