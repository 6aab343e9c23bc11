#include "model/tokenizer/added_vocabulary.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/tokenizer/unicode_util.h"

namespace kestrel::tokenizer {
namespace {

char32_t LastChar(std::string_view s) {
  size_t start = s.size() - 1;
  while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
  return DecodeUtf8(s, &start);
}

char32_t FirstChar(std::string_view s) {
  size_t pos = 0;
  return DecodeUtf8(s, &pos);
}

// Byte offset where the trailing whitespace of `s` begins.
size_t TrailingSpaceStart(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    size_t pos = start;
    if (!IsWhitespace(DecodeUtf8(s, &pos))) break;
    end = start;
  }
  return end;
}

// Byte length of the leading whitespace of `s`.
size_t LeadingSpaceLength(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    size_t next = pos;
    if (!IsWhitespace(DecodeUtf8(s, &next))) break;
    pos = next;
  }
  return pos;
}

}  // namespace

absl::StatusOr<AddedToken> ParseAddedToken(const Json& json, size_t index) {
  const std::string component = Concat("added_tokens[", index, "]");
  if (!json.is_object()) {
    return absl::InvalidArgumentError(
        Concat(component, " must be an object, got ", Describe(json)));
  }
  AddedToken token;
  ASSIGN_OR_RETURN(token.content, GetString(json, "content", component));
  ASSIGN_OR_RETURN(int64_t id, GetIntOr(json, "id", -1, component));
  if (id < 0 || id > INT32_MAX) {
    return absl::InvalidArgumentError(
        Concat(component, ".id must be a non-negative id, got ", id));
  }
  token.id = static_cast<int32_t>(id);
  ASSIGN_OR_RETURN(token.special, GetBoolOr(json, "special", false, component));
  ASSIGN_OR_RETURN(token.normalized, GetBoolOr(json, "normalized", !token.special, component));
  ASSIGN_OR_RETURN(token.lstrip, GetBoolOr(json, "lstrip", false, component));
  ASSIGN_OR_RETURN(token.rstrip, GetBoolOr(json, "rstrip", false, component));
  ASSIGN_OR_RETURN(token.single_word, GetBoolOr(json, "single_word", false, component));
  if (!IsValidUtf8(token.content)) {
    return absl::InvalidArgumentError(Concat(component, ".content is not valid UTF-8"));
  }
  return token;
}

LiteralMatcher::LiteralMatcher(const std::vector<std::string>& patterns) {
  nodes_.emplace_back();
  for (size_t p = 0; p < patterns.size(); ++p) {
    const std::string& pattern = patterns[p];
    if (pattern.empty()) continue;  // an empty token would match everywhere
    first_byte_[static_cast<unsigned char>(pattern[0])] = true;
    int32_t node = 0;
    for (unsigned char b : pattern) {
      auto it = nodes_[node].children.find(b);
      if (it == nodes_[node].children.end()) {
        const int32_t child = static_cast<int32_t>(nodes_.size());
        nodes_[node].children.emplace(b, child);
        nodes_.emplace_back();
        node = child;
      } else {
        node = it->second;
      }
    }
    // The first of duplicate patterns wins.
    if (nodes_[node].pattern < 0) nodes_[node].pattern = static_cast<int32_t>(p);
  }
}

std::vector<LiteralMatcher::Found> LiteralMatcher::FindAll(std::string_view text) const {
  std::vector<Found> found;
  size_t pos = 0;
  while (pos < text.size()) {
    if (!first_byte_[static_cast<unsigned char>(text[pos])]) {
      ++pos;
      continue;
    }
    int32_t node = 0;
    int32_t best = -1;
    size_t best_end = 0;
    for (size_t i = pos; i < text.size(); ++i) {
      auto it = nodes_[node].children.find(static_cast<unsigned char>(text[i]));
      if (it == nodes_[node].children.end()) break;
      node = it->second;
      if (nodes_[node].pattern >= 0) {
        best = nodes_[node].pattern;
        best_end = i + 1;
      }
    }
    if (best < 0) {
      ++pos;
      continue;
    }
    found.push_back({static_cast<size_t>(best), pos, best_end});
    pos = best_end;
  }
  return found;
}

absl::StatusOr<std::unique_ptr<AddedVocabulary>> AddedVocabulary::Create(
    std::vector<AddedToken> tokens, const Normalizer* normalizer) {
  auto vocab = std::unique_ptr<AddedVocabulary>(new AddedVocabulary());
  vocab->tokens_ = std::move(tokens);
  std::vector<std::string> raw_patterns;
  std::vector<std::string> normalized_patterns;
  for (size_t i = 0; i < vocab->tokens_.size(); ++i) {
    const AddedToken& token = vocab->tokens_[i];
    vocab->by_id_.emplace(token.id, i);
    vocab->by_content_.emplace(token.content, i);
    if (token.normalized) {
      std::string pattern = token.content;
      if (normalizer != nullptr) RETURN_IF_ERROR(normalizer->Normalize(&pattern));
      normalized_patterns.push_back(std::move(pattern));
      vocab->normalized_index_.push_back(i);
    } else {
      raw_patterns.push_back(token.content);
      vocab->raw_index_.push_back(i);
    }
  }
  vocab->raw_matcher_ = std::make_unique<LiteralMatcher>(raw_patterns);
  vocab->normalized_matcher_ = std::make_unique<LiteralMatcher>(normalized_patterns);
  return vocab;
}

const AddedToken* AddedVocabulary::FindById(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedVocabulary::FindByContent(std::string_view content) const {
  auto it = by_content_.find(AbslView(content));
  return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

void AddedVocabulary::SplitOnTokens(std::string_view text, const LiteralMatcher& matcher,
                                    const std::vector<size_t>& token_index, bool parse_special,
                                    bool at_origin, std::vector<Piece>* pieces) const {
  size_t offset = 0;  // end of the last emitted piece
  auto emit_text = [&](size_t start, size_t end) {
    if (end <= start) return;
    Piece piece;
    piece.text = std::string(text.substr(start, end - start));
    piece.at_origin = at_origin && start == 0;
    pieces->push_back(std::move(piece));
  };
  for (const LiteralMatcher::Found& match : matcher.FindAll(text)) {
    const AddedToken& token = tokens_[token_index[match.pattern]];
    if (!parse_special && token.special) continue;
    size_t start = match.start;
    size_t stop = match.end;
    if (token.single_word) {
      const bool start_ok = start == 0 || !IsAlphanumeric(LastChar(text.substr(0, start)));
      const bool stop_ok = stop == text.size() || !IsAlphanumeric(FirstChar(text.substr(stop)));
      if (!start_ok || !stop_ok) continue;
    }
    if (token.lstrip) start = std::max(TrailingSpaceStart(text.substr(0, start)), offset);
    if (token.rstrip) stop += LeadingSpaceLength(text.substr(stop));
    // An rstrip may have swallowed the start of this match's neighbour.
    start = std::max(start, offset);
    if (stop < start) stop = start;
    emit_text(offset, start);
    Piece piece;
    piece.text = token.content;
    piece.token_id = token.id;
    pieces->push_back(std::move(piece));
    offset = stop;
  }
  emit_text(offset, text.size());
}

absl::Status AddedVocabulary::ExtractAndNormalize(std::string_view text,
                                                  const Normalizer* normalizer,
                                                  bool parse_special,
                                                  std::vector<Piece>* pieces) const {
  std::vector<Piece> raw;
  SplitOnTokens(text, *raw_matcher_, raw_index_, parse_special, /*at_origin=*/true, &raw);
  for (Piece& piece : raw) {
    if (piece.token_id >= 0) {
      pieces->push_back(std::move(piece));
      continue;
    }
    if (normalizer != nullptr) RETURN_IF_ERROR(normalizer->Normalize(&piece.text));
    SplitOnTokens(piece.text, *normalized_matcher_, normalized_index_, parse_special,
                  piece.at_origin, pieces);
  }
  return absl::OkStatus();
}

}  // namespace kestrel::tokenizer
