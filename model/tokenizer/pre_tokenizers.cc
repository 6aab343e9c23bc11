#include "model/tokenizer/pre_tokenizers.h"

#include <unicode/uchar.h>

#include <cctype>
#include <functional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/tokenizer/pattern.h"
#include "model/tokenizer/unicode_util.h"

namespace kestrel::tokenizer {
namespace {

// GPT-2's word pattern, used by ByteLevel when use_regex is true.
constexpr char kGpt2Pattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// The reference's Whitespace pattern \w+|[^\w\s]+ with Rust's Unicode \w.
constexpr char kWordPattern[] =
    R"([\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]+|[^\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}\s]+)";

using SplitFn = std::function<absl::Status(const Piece&, std::vector<Piece>*)>;

// Applies `fn` to every piece that is not yet a token, keeping the rest.
absl::Status SplitEach(std::vector<Piece>* pieces, const SplitFn& fn) {
  std::vector<Piece> out;
  out.reserve(pieces->size());
  for (Piece& piece : *pieces) {
    if (piece.token_id >= 0) {
      out.push_back(std::move(piece));
      continue;
    }
    RETURN_IF_ERROR(fn(piece, &out));
  }
  *pieces = std::move(out);
  return absl::OkStatus();
}

// Emits the pieces of `parent` given by `matches` and `behavior`.
void EmitSplits(const Piece& parent, const std::vector<Match>& matches, SplitBehavior behavior,
                std::vector<Piece>* out) {
  for (const auto& [start, end] : ApplySplitBehavior(matches, behavior)) {
    Piece piece;
    piece.text = parent.text.substr(start, end - start);
    piece.at_origin = parent.at_origin && start == 0;
    out->push_back(std::move(piece));
  }
}

// Pattern::find_matches for a char predicate: every matching char is its own
// match.
std::vector<Match> CharMatches(const std::string& text, const std::function<bool(char32_t)>& pred) {
  std::vector<Match> matches;
  if (text.empty()) {
    matches.push_back({0, 0, false});
    return matches;
  }
  size_t last = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t start = pos;
    const char32_t c = DecodeUtf8(text, &pos);
    if (pred(c)) {
      if (last < start) matches.push_back({last, start, false});
      matches.push_back({start, pos, true});
      last = pos;
    }
  }
  if (last < text.size()) matches.push_back({last, text.size(), false});
  return matches;
}

bool IsPunctuation(char32_t c) {
  return (c < 0x80 && std::ispunct(static_cast<int>(c))) || u_ispunct(static_cast<UChar32>(c));
}

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts)
      : parts_(std::move(parts)) {}
  absl::Status PreTokenize(std::vector<Piece>* pieces) const override {
    for (const auto& part : parts_) RETURN_IF_ERROR(part->PreTokenize(pieces));
    return absl::OkStatus();
  }

 private:
  const std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(std::unique_ptr<Pattern> pattern, SplitBehavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}
  absl::Status PreTokenize(std::vector<Piece>* pieces) const override {
    std::vector<Match> matches;
    return SplitEach(pieces, [&](const Piece& piece, std::vector<Piece>* out) -> absl::Status {
      RETURN_IF_ERROR(pattern_->FindMatches(piece.text, &matches));
      if (invert_) {
        for (Match& m : matches) m.is_match = !m.is_match;
      }
      EmitSplits(piece, matches, behavior_, out);
      return absl::OkStatus();
    });
  }

 private:
  const std::unique_ptr<Pattern> pattern_;
  const SplitBehavior behavior_;
  const bool invert_;
};

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::unique_ptr<Pattern> regex)
      : add_prefix_space_(add_prefix_space), regex_(std::move(regex)) {}
  absl::Status PreTokenize(std::vector<Piece>* pieces) const override {
    std::vector<Match> matches;
    RETURN_IF_ERROR(SplitEach(pieces, [&](const Piece& piece, std::vector<Piece>* out) {
      Piece p = piece;
      if (add_prefix_space_ && (p.text.empty() || p.text[0] != ' ')) p.text.insert(p.text.begin(), ' ');
      if (regex_ == nullptr) {
        if (!p.text.empty()) out->push_back(std::move(p));
        return absl::OkStatus();
      }
      RETURN_IF_ERROR(regex_->FindMatches(p.text, &matches));
      EmitSplits(p, matches, SplitBehavior::kIsolated, out);
      return absl::OkStatus();
    }));
    // Every byte becomes its printable stand-in, so the BPE vocabulary only
    // ever sees the 256-symbol alphabet.
    const auto& table = ByteToUnicode();
    for (Piece& piece : *pieces) {
      if (piece.token_id >= 0) continue;
      std::string mapped;
      mapped.reserve(piece.text.size() * 2);
      for (unsigned char b : piece.text) mapped += table[b];
      piece.text = std::move(mapped);
    }
    return absl::OkStatus();
  }

 private:
  const bool add_prefix_space_;
  const std::unique_ptr<Pattern> regex_;  // null when use_regex is false
};

enum class PrependScheme { kAlways, kFirst, kNever };

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)),
        scheme_(scheme),
        split_(split),
        space_(Pattern::Literal(" ")),
        marker_(Pattern::Literal(replacement_)) {}
  absl::Status PreTokenize(std::vector<Piece>* pieces) const override {
    std::vector<Match> matches;
    return SplitEach(pieces, [&](const Piece& piece, std::vector<Piece>* out) -> absl::Status {
      Piece p;
      p.at_origin = piece.at_origin;
      RETURN_IF_ERROR(space_->FindMatches(piece.text, &matches));
      for (const Match& m : matches) {
        if (m.is_match) {
          p.text += replacement_;
        } else {
          p.text.append(piece.text, m.start, m.end - m.start);
        }
      }
      const bool starts_with = p.text.compare(0, replacement_.size(), replacement_) == 0;
      if (!starts_with && (scheme_ == PrependScheme::kAlways ||
                           (scheme_ == PrependScheme::kFirst && p.at_origin))) {
        p.text = replacement_ + p.text;
      }
      if (!split_) {
        if (!p.text.empty()) out->push_back(std::move(p));
        return absl::OkStatus();
      }
      RETURN_IF_ERROR(marker_->FindMatches(p.text, &matches));
      EmitSplits(p, matches, SplitBehavior::kMergedWithNext, out);
      return absl::OkStatus();
    });
  }

 private:
  const std::string replacement_;
  const PrependScheme scheme_;
  const bool split_;
  const std::unique_ptr<Pattern> space_;
  const std::unique_ptr<Pattern> marker_;
};

// Pre-tokenizers defined by a char predicate and a split behaviour
// (Digits, WhitespaceSplit, Punctuation, CharDelimiterSplit).
class CharSplitPreTokenizer : public PreTokenizer {
 public:
  CharSplitPreTokenizer(std::function<bool(char32_t)> pred, SplitBehavior behavior)
      : pred_(std::move(pred)), behavior_(behavior) {}
  absl::Status PreTokenize(std::vector<Piece>* pieces) const override {
    return SplitEach(pieces, [&](const Piece& piece, std::vector<Piece>* out) {
      EmitSplits(piece, CharMatches(piece.text, pred_), behavior_, out);
      return absl::OkStatus();
    });
  }

 private:
  const std::function<bool(char32_t)> pred_;
  const SplitBehavior behavior_;
};

absl::StatusOr<std::unique_ptr<PreTokenizer>> MakeWhitespace() {
  ASSIGN_OR_RETURN(auto pattern, Pattern::FromRegex(kWordPattern));
  // Keep the word/punctuation runs, drop what lies between them.
  return std::make_unique<SplitPreTokenizer>(std::move(pattern), SplitBehavior::kRemoved,
                                             /*invert=*/true);
}

absl::StatusOr<PrependScheme> ParsePrependScheme(const Json& json, const std::string& component) {
  if (const Json* scheme = FindField(json, "prepend_scheme"); scheme != nullptr) {
    if (scheme->is_string()) {
      const auto& name = scheme->get_ref<const std::string&>();
      if (name == "always") return PrependScheme::kAlways;
      if (name == "first") return PrependScheme::kFirst;
      if (name == "never") return PrependScheme::kNever;
    }
    return absl::InvalidArgumentError(Concat(
        component, ".prepend_scheme must be \"always\", \"first\" or \"never\", got ",
        Describe(*scheme)));
  }
  // Files written before prepend_scheme existed carry add_prefix_space.
  ASSIGN_OR_RETURN(bool add_prefix_space, GetBoolOr(json, "add_prefix_space", true, component));
  return add_prefix_space ? PrependScheme::kAlways : PrependScheme::kNever;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizer::FromJson(const Json& json) {
  ASSIGN_OR_RETURN(const std::string type, GetComponentType(json, "pre_tokenizer"));
  const std::string component = Concat("pre_tokenizer ", type);
  if (type == "Sequence") {
    ASSIGN_OR_RETURN(auto parts, ParseSequence<PreTokenizer>(json, "pretokenizers", component));
    return std::make_unique<SequencePreTokenizer>(std::move(parts));
  }
  if (type == "ByteLevel") {
    ASSIGN_OR_RETURN(bool add_prefix_space, GetBoolOr(json, "add_prefix_space", true, component));
    ASSIGN_OR_RETURN(bool use_regex, GetBoolOr(json, "use_regex", true, component));
    std::unique_ptr<Pattern> regex;
    if (use_regex) {
      ASSIGN_OR_RETURN(regex, Pattern::FromRegex(kGpt2Pattern));
    }
    return std::make_unique<ByteLevelPreTokenizer>(add_prefix_space, std::move(regex));
  }
  if (type == "Split") {
    const Json* pattern_json = FindField(json, "pattern");
    if (pattern_json == nullptr) {
      return absl::InvalidArgumentError(Concat(component, ": missing field \"pattern\""));
    }
    ASSIGN_OR_RETURN(auto pattern, Pattern::FromJson(*pattern_json, component));
    ASSIGN_OR_RETURN(std::string behavior_name, GetString(json, "behavior", component));
    ASSIGN_OR_RETURN(SplitBehavior behavior, ParseSplitBehavior(behavior_name, component));
    ASSIGN_OR_RETURN(bool invert, GetBoolOr(json, "invert", false, component));
    return std::make_unique<SplitPreTokenizer>(std::move(pattern), behavior, invert);
  }
  if (type == "Digits") {
    ASSIGN_OR_RETURN(bool individual, GetBoolOr(json, "individual_digits", false, component));
    return std::make_unique<CharSplitPreTokenizer>(
        IsNumeric, individual ? SplitBehavior::kIsolated : SplitBehavior::kContiguous);
  }
  if (type == "Metaspace") {
    ASSIGN_OR_RETURN(std::string replacement, GetStringOr(json, "replacement", "\u2581", component));
    size_t pos = 0;
    if (replacement.empty() || (DecodeUtf8(replacement, &pos), pos != replacement.size())) {
      return absl::InvalidArgumentError(Concat(
          component, ".replacement must be a single character, got \"", replacement, "\""));
    }
    ASSIGN_OR_RETURN(PrependScheme scheme, ParsePrependScheme(json, component));
    ASSIGN_OR_RETURN(bool split, GetBoolOr(json, "split", true, component));
    return std::make_unique<MetaspacePreTokenizer>(std::move(replacement), scheme, split);
  }
  if (type == "Whitespace") return MakeWhitespace();
  if (type == "WhitespaceSplit") {
    return std::make_unique<CharSplitPreTokenizer>(IsWhitespace, SplitBehavior::kRemoved);
  }
  if (type == "Punctuation") {
    ASSIGN_OR_RETURN(std::string name, GetStringOr(json, "behavior", "Isolated", component));
    ASSIGN_OR_RETURN(SplitBehavior behavior, ParseSplitBehavior(name, component));
    return std::make_unique<CharSplitPreTokenizer>(IsPunctuation, behavior);
  }
  if (type == "CharDelimiterSplit") {
    ASSIGN_OR_RETURN(std::string delimiter, GetString(json, "delimiter", component));
    size_t pos = 0;
    const char32_t c = delimiter.empty() ? 0 : DecodeUtf8(delimiter, &pos);
    if (delimiter.empty() || pos != delimiter.size()) {
      return absl::InvalidArgumentError(Concat(
          component, ".delimiter must be a single character, got \"", delimiter, "\""));
    }
    return std::make_unique<CharSplitPreTokenizer>([c](char32_t x) { return x == c; },
                                                   SplitBehavior::kRemoved);
  }
  if (type == "BertPreTokenizer") {
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    parts.push_back(std::make_unique<CharSplitPreTokenizer>(IsWhitespace, SplitBehavior::kRemoved));
    parts.push_back(std::make_unique<CharSplitPreTokenizer>(IsPunctuation, SplitBehavior::kIsolated));
    return std::make_unique<SequencePreTokenizer>(std::move(parts));
  }
  return absl::UnimplementedError(Concat(
      "unsupported pre_tokenizer type \"", type,
      "\" (supported: Sequence, ByteLevel, Split, Digits, Metaspace, Whitespace, "
      "WhitespaceSplit, Punctuation, CharDelimiterSplit, BertPreTokenizer)"));
}

}  // namespace kestrel::tokenizer
