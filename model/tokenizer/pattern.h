// Patterns used by tokenizer.json components ({"String": ...} or
// {"Regex": ...}) and the reference's rules for turning matches into
// splits. Regexes run on PCRE2 (UTF + UCP, JIT when available), which
// supports the \p{L}/\p{N} classes, lookahead and inline (?i:...) groups the
// Llama 3, Qwen and GPT-2 pre-tokenizer patterns use.
#ifndef KESTREL_MODEL_TOKENIZER_PATTERN_H_
#define KESTREL_MODEL_TOKENIZER_PATTERN_H_

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/tokenizer/json_util.h"

namespace kestrel::tokenizer {

// A byte range of a string and whether it is a match of the pattern.
struct Match {
  size_t start = 0;
  size_t end = 0;
  bool is_match = false;
};

// A compiled PCRE2 regex. Thread-safe: the compiled code is immutable and
// match state (match data, JIT stack) is per thread, so concurrent callers
// share no lock.
class Regex {
 public:
  // Compiles `pattern`; an invalid pattern is an InvalidArgument error naming
  // it, the offset and PCRE2's message.
  static absl::StatusOr<std::unique_ptr<Regex>> Create(std::string_view pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends the [start, end) byte ranges of successive non-overlapping
  // matches in `text`, with Rust's iteration rule (an empty match right after
  // the previous match is skipped by advancing one character).
  // REQUIRES: `text` is valid UTF-8 (checked; error otherwise).
  absl::Status FindAll(std::string_view text,
                       std::vector<std::pair<size_t, size_t>>* out) const;

  const std::string& pattern() const { return pattern_; }
  bool jit() const { return jit_; }

 private:
  Regex(std::string pattern, void* code, bool jit)
      : pattern_(std::move(pattern)), code_(code), jit_(jit) {}

  // Constant after construction.
  const std::string pattern_;
  void* const code_;  // pcre2_code_8*, owned; void* keeps pcre2.h out of the header
  const bool jit_;
};

// A tokenizer.json pattern: a literal string or a regex. Thread-safe.
class Pattern {
 public:
  // Parses {"String": "..."} or {"Regex": "..."}; `component` prefixes errors.
  static absl::StatusOr<std::unique_ptr<Pattern>> FromJson(const Json& json,
                                                           std::string_view component);
  static std::unique_ptr<Pattern> Literal(std::string literal);
  static absl::StatusOr<std::unique_ptr<Pattern>> FromRegex(std::string_view regex);

  // The reference's Pattern::find_matches: the whole of `text` covered by
  // alternating non-match / match ranges (an empty text yields one empty
  // non-match).
  absl::Status FindMatches(std::string_view text, std::vector<Match>* out) const;

 private:
  Pattern() = default;
  std::string literal_;          // used when regex_ is null
  std::unique_ptr<Regex> regex_;
};

// How a Split pre-tokenizer treats the delimiters (the matches).
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

absl::StatusOr<SplitBehavior> ParseSplitBehavior(std::string_view name,
                                                 std::string_view component);

// Turns `matches` (as from FindMatches) into the [start, end) ranges of the
// resulting non-empty pieces, exactly as NormalizedString::split does.
std::vector<std::pair<size_t, size_t>> ApplySplitBehavior(const std::vector<Match>& matches,
                                                          SplitBehavior behavior);

}  // namespace kestrel::tokenizer

#endif  // KESTREL_MODEL_TOKENIZER_PATTERN_H_
