#include "model/tokenizer/bpe_model.h"

#include <queue>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "model/tokenizer/unicode_util.h"

namespace kestrel::tokenizer {
namespace {

constexpr char kComponent[] = "model BPE";
constexpr std::string_view kMarker = "\xE2\x96\x81";  // U+2581

// True when `token` contains the marker right after a non-marker character.
bool JoinsIntoMarker(std::string_view token) {
  for (size_t pos = token.find(kMarker); pos != std::string_view::npos;
       pos = token.find(kMarker, pos + kMarker.size())) {
    if (pos > 0 && (pos < kMarker.size() || token.substr(pos - kMarker.size(), kMarker.size()) != kMarker)) {
      return true;
    }
  }
  return false;
}

// Largest id accepted; keeps a corrupt file from making us allocate gigabytes.
constexpr int64_t kMaxTokenId = (int64_t{1} << 24) - 1;

absl::StatusOr<std::pair<std::string, std::string>> ParseMerge(const Json& merge, size_t rank) {
  if (merge.is_string()) {
    const std::string& text = merge.get_ref<const std::string&>();
    const size_t space = text.find(' ');
    if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos) {
      return absl::InvalidArgumentError(Concat(
          kComponent, ".merges[", rank, "] must be \"left right\", got ", Describe(merge)));
    }
    return std::make_pair(text.substr(0, space), text.substr(space + 1));
  }
  if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
    return std::make_pair(merge[0].get<std::string>(), merge[1].get<std::string>());
  }
  return absl::InvalidArgumentError(Concat(
      kComponent, ".merges[", rank, "] must be \"left right\" or [left, right], got ",
      Describe(merge)));
}

// A symbol of the word being merged (the reference's Word/Symbol).
struct Symbol {
  int32_t id;
  int32_t prev;
  int32_t next;
  int32_t len;  // bytes; 0 once merged into its left neighbour
};

struct QueuedMerge {
  int32_t pos;
  int32_t rank;
  int32_t new_id;
  // Lowest rank first, then leftmost first: the reference's order.
  bool operator<(const QueuedMerge& other) const {
    if (rank != other.rank) return rank > other.rank;
    return pos > other.pos;
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::FromJson(const Json& model,
                                                            const Options& options) {
  auto bpe = std::unique_ptr<BpeModel>(new BpeModel(options));
  ASSIGN_OR_RETURN(const Json* vocab, GetObject(model, "vocab", kComponent));
  int64_t max_id = -1;
  bpe->vocab_.reserve(vocab->size());
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
        it.value().get<int64_t>() > kMaxTokenId) {
      return absl::InvalidArgumentError(Concat(kComponent, ".vocab[\"", it.key(),
                                                     "\"] must be an id in [0, ", kMaxTokenId,
                                                     "], got ", Describe(it.value())));
    }
    const int64_t id = it.value().get<int64_t>();
    bpe->vocab_[it.key()] = static_cast<int32_t>(id);
    max_id = std::max(max_id, id);
  }
  bpe->id_to_token_.resize(static_cast<size_t>(max_id + 1));
  bpe->has_token_.resize(static_cast<size_t>(max_id + 1));
  for (const auto& [token, id] : bpe->vocab_) {
    bpe->id_to_token_[id] = token;
    bpe->has_token_[id] = true;
  }

  if (const Json* dropout = FindField(model, "dropout"); dropout != nullptr) {
    if (!dropout->is_number() || dropout->get<double>() != 0.0) {
      return absl::UnimplementedError(Concat(
          kComponent, ".dropout is not supported (inference must be deterministic), got ",
          Describe(*dropout)));
    }
  }
  ASSIGN_OR_RETURN(bpe->continuing_subword_prefix_,
                   GetStringOr(model, "continuing_subword_prefix", "", kComponent));
  ASSIGN_OR_RETURN(bpe->end_of_word_suffix_,
                   GetStringOr(model, "end_of_word_suffix", "", kComponent));
  ASSIGN_OR_RETURN(bpe->fuse_unk_, GetBoolOr(model, "fuse_unk", false, kComponent));
  ASSIGN_OR_RETURN(bpe->byte_fallback_, GetBoolOr(model, "byte_fallback", false, kComponent));
  ASSIGN_OR_RETURN(bpe->ignore_merges_, GetBoolOr(model, "ignore_merges", false, kComponent));
  if (FindField(model, "unk_token") != nullptr) {
    ASSIGN_OR_RETURN(std::string unk, GetString(model, "unk_token", kComponent));
    auto it = bpe->vocab_.find(unk);
    if (it == bpe->vocab_.end()) {
      return absl::InvalidArgumentError(Concat(kComponent, ".unk_token \"", unk,
                                                     "\" is not in the vocabulary"));
    }
    bpe->unk_id_ = it->second;
  }
  bpe->split_on_marker_ = bpe->continuing_subword_prefix_.empty() &&
                          bpe->end_of_word_suffix_.empty() &&
                          bpe->vocab_.contains(AbslView(kMarker));
  for (const auto& [token, id] : bpe->vocab_) {
    if (!bpe->split_on_marker_) break;
    if (JoinsIntoMarker(token)) bpe->split_on_marker_ = false;
  }
  for (int b = 0; b < 256; ++b) {
    auto it = bpe->vocab_.find(absl::StrFormat("<0x%02X>", b));
    bpe->byte_ids_[b] = it == bpe->vocab_.end() ? -1 : it->second;
  }

  ASSIGN_OR_RETURN(const Json* merges, GetArray(model, "merges", kComponent));
  bpe->merges_.reserve(merges->size());
  const size_t prefix_len = bpe->continuing_subword_prefix_.size();
  for (size_t rank = 0; rank < merges->size(); ++rank) {
    ASSIGN_OR_RETURN(auto pair, ParseMerge((*merges)[rank], rank));
    auto left = bpe->vocab_.find(pair.first);
    auto right = bpe->vocab_.find(pair.second);
    if (left == bpe->vocab_.end() || right == bpe->vocab_.end()) {
      const std::string& missing = left == bpe->vocab_.end() ? pair.first : pair.second;
      return absl::InvalidArgumentError(Concat(kComponent, ".merges[", rank,
                                                     "] names token \"", missing,
                                                     "\" which is not in the vocabulary"));
    }
    std::string merged = pair.first;
    if (prefix_len > 0 && pair.second.compare(0, prefix_len, bpe->continuing_subword_prefix_) == 0) {
      merged.append(pair.second, prefix_len);
    } else {
      merged += pair.second;
    }
    auto result = bpe->vocab_.find(merged);
    if (result == bpe->vocab_.end()) {
      return absl::InvalidArgumentError(Concat(kComponent, ".merges[", rank, "] (\"",
                                                     pair.first, "\", \"", pair.second,
                                                     "\") makes \"", merged,
                                                     "\" which is not in the vocabulary"));
    }
    // A repeated pair keeps its last rank, as the reference's HashMap does.
    bpe->merges_[PairKey(left->second, right->second)] = {static_cast<int32_t>(rank),
                                                          result->second};
  }
  return bpe;
}

std::optional<int32_t> BpeModel::TokenToId(std::string_view token) const {
  auto it = vocab_.find(AbslView(token));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::IdToToken(int32_t id) const {
  if (id < 0 || id >= id_limit() || !has_token_[id]) return nullptr;
  return &id_to_token_[id];
}

absl::Status BpeModel::Tokenize(std::string_view word, std::vector<int32_t>* ids) const {
  if (word.empty()) return absl::OkStatus();
  if (ignore_merges_) {
    if (auto it = vocab_.find(AbslView(word)); it != vocab_.end()) {
      ids->push_back(it->second);
      return absl::OkStatus();
    }
  }
  if (!split_on_marker_) return TokenizeCached(word, ids);
  size_t start = 0;
  for (size_t pos = word.find(kMarker, 1); pos != std::string_view::npos;
       pos = word.find(kMarker, pos + kMarker.size())) {
    const bool after_marker =
        pos >= start + kMarker.size() && word.substr(pos - kMarker.size(), kMarker.size()) == kMarker;
    if (after_marker || pos == start) continue;
    RETURN_IF_ERROR(TokenizeCached(word.substr(start, pos - start), ids));
    start = pos;
  }
  return TokenizeCached(word.substr(start), ids);
}

absl::Status BpeModel::TokenizeCached(std::string_view word, std::vector<int32_t>* ids) const {
  if (cache_.Lookup(word, ids)) return absl::OkStatus();
  std::vector<int32_t> word_ids;
  RETURN_IF_ERROR(MergeWord(word, &word_ids));
  cache_.Insert(word, word_ids);
  ids->insert(ids->end(), word_ids.begin(), word_ids.end());
  return absl::OkStatus();
}

absl::Status BpeModel::MergeWord(std::string_view word, std::vector<int32_t>* ids) const {
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  auto add = [&symbols](int32_t id, size_t len) {
    const int32_t index = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, index - 1, -1, static_cast<int32_t>(len)});
    if (index > 0) symbols[index - 1].next = index;
  };
  // A run of unknown characters waiting to become unk token(s). Plain
  // fields rather than std::optional: GCC's -Wmaybe-uninitialized misfires
  // on optional<pair> at -O2.
  bool has_unk = false;
  size_t unk_len = 0;
  std::string buffer;
  size_t pos = 0;
  while (pos < word.size()) {
    const size_t start = pos;
    pos += Utf8CharLength(word, pos);
    const size_t len = pos - start;
    std::string_view piece = word.substr(start, len);
    if ((start > 0 && !continuing_subword_prefix_.empty()) ||
        (pos == word.size() && !end_of_word_suffix_.empty())) {
      buffer.clear();
      if (start > 0) buffer += continuing_subword_prefix_;
      buffer += piece;
      if (pos == word.size()) buffer += end_of_word_suffix_;
      piece = buffer;
    }
    if (auto it = vocab_.find(AbslView(piece)); it != vocab_.end()) {
      if (has_unk) {
        add(*unk_id_, unk_len);
        has_unk = false;
      }
      add(it->second, len);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (unsigned char b : piece) all = all && byte_ids_[b] >= 0;
      if (all) {
        // The reference does not flush a pending unk here; neither do we.
        for (unsigned char b : piece) add(byte_ids_[b], 1);
        continue;
      }
    }
    if (unk_id_) {
      if (has_unk && fuse_unk_) {
        unk_len += len;
      } else {
        if (has_unk) add(*unk_id_, unk_len);
        has_unk = true;
        unk_len = len;
      }
    }
    // Without an unk token the character is dropped, as in the reference.
  }
  if (has_unk) add(*unk_id_, unk_len);

  std::priority_queue<QueuedMerge> queue;
  for (size_t i = 0; i + 1 < symbols.size(); ++i) {
    auto it = merges_.find(PairKey(symbols[i].id, symbols[i + 1].id));
    if (it != merges_.end()) {
      queue.push({static_cast<int32_t>(i), it->second.rank, it->second.new_id});
    }
  }
  while (!queue.empty()) {
    const QueuedMerge top = queue.top();
    queue.pop();
    Symbol& current = symbols[top.pos];
    if (current.len == 0 || current.next == -1) continue;
    const Symbol right = symbols[current.next];
    // Skip entries made stale by earlier merges.
    auto it = merges_.find(PairKey(current.id, right.id));
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;
    const int32_t right_pos = current.next;
    current.id = top.new_id;
    current.len += right.len;
    current.next = right.next;
    symbols[right_pos].len = 0;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (current.prev >= 0) {
      auto left = merges_.find(PairKey(symbols[current.prev].id, current.id));
      if (left != merges_.end()) {
        queue.push({current.prev, left->second.rank, left->second.new_id});
      }
    }
    if (current.next >= 0) {
      auto next = merges_.find(PairKey(current.id, symbols[current.next].id));
      if (next != merges_.end()) queue.push({top.pos, next->second.rank, next->second.new_id});
    }
  }
  for (const Symbol& s : symbols) {
    if (s.len != 0) ids->push_back(s.id);
  }
  return absl::OkStatus();
}

}  // namespace kestrel::tokenizer
