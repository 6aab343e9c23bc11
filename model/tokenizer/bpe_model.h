// The BPE model of tokenizer.json ("model": {"type": "BPE", ...}): byte-pair
// merges over a vocabulary, with the reference's byte_fallback, fuse_unk,
// ignore_merges, unk_token, continuing_subword_prefix and end_of_word_suffix
// semantics. WordPiece, Unigram and WordLevel are rejected by name.
#ifndef KESTREL_MODEL_TOKENIZER_BPE_MODEL_H_
#define KESTREL_MODEL_TOKENIZER_BPE_MODEL_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/tokenizer/json_util.h"
#include "model/tokenizer/word_cache.h"

namespace kestrel::tokenizer {

// Thread-safe: everything but the word cache is constant after
// construction, and the cache is internally synchronized.
class BpeModel {
 public:
  struct Options {
    // Number of words kept in the word cache (0 disables it).
    size_t cache_capacity = 100000;
  };

  // Builds the model from tokenizer.json's "model" object. Merges may be
  // "a b" strings or ["a", "b"] pairs; a merge naming a token missing from
  // the vocabulary, or whose concatenation is missing, is an error naming it.
  static absl::StatusOr<std::unique_ptr<BpeModel>> FromJson(const Json& model,
                                                            const Options& options);

  // Appends the ids of one pre-tokenized word to `ids`.
  absl::Status Tokenize(std::string_view word, std::vector<int32_t>* ids) const;

  std::optional<int32_t> TokenToId(std::string_view token) const;
  // The token of `id`, or nullptr when no token has that id.
  const std::string* IdToToken(int32_t id) const;
  // One past the largest id in the vocabulary.
  int32_t id_limit() const { return static_cast<int32_t>(id_to_token_.size()); }

 private:
  struct MergeResult {
    int32_t rank;
    int32_t new_id;
  };
  explicit BpeModel(const Options& options) : cache_(options.cache_capacity) {}
  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  absl::Status MergeWord(std::string_view word, std::vector<int32_t>* ids) const;
  // Tokenizes through the word cache (no ignore_merges shortcut).
  absl::Status TokenizeCached(std::string_view word, std::vector<int32_t>* ids) const;

  // Constant after construction.
  absl::flat_hash_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;  // index = id; empty string = no token
  std::vector<bool> has_token_;
  absl::flat_hash_map<uint64_t, MergeResult> merges_;  // (left id, right id) -> merge
  std::optional<int32_t> unk_id_;
  std::string continuing_subword_prefix_;
  std::string end_of_word_suffix_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  // True when no merge can ever join a character to a following U+2581
  // ("▁", SentencePiece's space marker): no vocabulary token contains a
  // non-marker character followed by the marker, and the marker itself is a
  // token. Then a word can be cut before each marker that follows a
  // non-marker without changing the result, which turns a whole
  // SentencePiece-style input (no pre-tokenizer: one giant "word") into
  // cacheable words.
  bool split_on_marker_ = false;
  std::array<int32_t, 256> byte_ids_;  // id of "<0xAB>" per byte, -1 if absent

  mutable WordCache cache_;  // internally synchronized
};

}  // namespace kestrel::tokenizer

#endif  // KESTREL_MODEL_TOKENIZER_BPE_MODEL_H_
