// Added and special tokens (tokenizer.json "added_tokens"): found in the
// input before the model sees it, with the reference's rules: leftmost-
// longest matching, `normalized` tokens matched after normalization and the
// others before it, `lstrip`/`rstrip` swallowing adjacent whitespace,
// `single_word` requiring word boundaries. A per-call switch treats special
// tokens as plain text so user input cannot inject control tokens.
#ifndef KESTREL_MODEL_TOKENIZER_ADDED_VOCABULARY_H_
#define KESTREL_MODEL_TOKENIZER_ADDED_VOCABULARY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/tokenizer/json_util.h"
#include "model/tokenizer/normalizers.h"
#include "model/tokenizer/pre_tokenizers.h"

namespace kestrel::tokenizer {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool normalized = true;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
};

// Parses one entry of "added_tokens"; `index` is used in errors.
absl::StatusOr<AddedToken> ParseAddedToken(const Json& json, size_t index);

// Finds a set of literal strings in text: at each position the longest
// pattern starting there, scanning left to right without overlaps (the
// reference's aho-corasick LeftmostLongest). Thread-safe (immutable).
class LiteralMatcher {
 public:
  struct Found {
    size_t pattern;  // index into the patterns given to the constructor
    size_t start;
    size_t end;
  };
  explicit LiteralMatcher(const std::vector<std::string>& patterns);
  std::vector<Found> FindAll(std::string_view text) const;

 private:
  struct Node {
    absl::flat_hash_map<unsigned char, int32_t> children;
    int32_t pattern = -1;
  };
  std::vector<Node> nodes_;            // nodes_[0] is the root
  bool first_byte_[256] = {};          // quick reject of impossible starts
};

// Thread-safe: immutable after Create.
class AddedVocabulary {
 public:
  // `normalizer` (may be null; not owned, used only during Create) turns the
  // content of `normalized` tokens into what they match after normalization.
  static absl::StatusOr<std::unique_ptr<AddedVocabulary>> Create(std::vector<AddedToken> tokens,
                                                                 const Normalizer* normalizer);

  // Splits `text` into added-token pieces and normalized text pieces, the
  // reference's extract_and_normalize. With `parse_special` false, special
  // tokens are not recognised (their text is tokenized as ordinary text).
  // `normalizer` may be null. REQUIRES: `text` is valid UTF-8.
  absl::Status ExtractAndNormalize(std::string_view text, const Normalizer* normalizer,
                                   bool parse_special, std::vector<Piece>* pieces) const;

  const AddedToken* FindById(int32_t id) const;
  const AddedToken* FindByContent(std::string_view content) const;
  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  AddedVocabulary() = default;
  // Splits `text` on the tokens of `matcher` (whose pattern i is token
  // `ids[i]`), appending pieces; `at_origin` as for Piece.
  void SplitOnTokens(std::string_view text, const LiteralMatcher& matcher,
                     const std::vector<size_t>& token_index, bool parse_special, bool at_origin,
                     std::vector<Piece>* pieces) const;

  // Constant after construction.
  std::vector<AddedToken> tokens_;
  absl::flat_hash_map<int32_t, size_t> by_id_;
  absl::flat_hash_map<std::string, size_t> by_content_;
  std::unique_ptr<LiteralMatcher> raw_matcher_;         // tokens with normalized=false
  std::vector<size_t> raw_index_;                       // matcher pattern -> tokens_ index
  std::unique_ptr<LiteralMatcher> normalized_matcher_;  // tokens with normalized=true
  std::vector<size_t> normalized_index_;
};

}  // namespace kestrel::tokenizer

#endif  // KESTREL_MODEL_TOKENIZER_ADDED_VOCABULARY_H_
