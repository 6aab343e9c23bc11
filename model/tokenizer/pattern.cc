#include "model/tokenizer/pattern.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "model/tokenizer/unicode_util.h"

namespace kestrel::tokenizer {
namespace {

// Per-thread match state. A JIT stack larger than PCRE2's 32 KiB default lets
// patterns such as \s+(?!\S) run over long whitespace runs without falling
// back to the slower interpreter.
class ThreadMatchState {
 public:
  ThreadMatchState() {
    match_data_ = pcre2_match_data_create(1, nullptr);
    context_ = pcre2_match_context_create(nullptr);
    jit_stack_ = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
    if (context_ != nullptr && jit_stack_ != nullptr) {
      pcre2_jit_stack_assign(context_, nullptr, jit_stack_);
    }
  }
  ~ThreadMatchState() {
    pcre2_match_data_free(match_data_);
    pcre2_match_context_free(context_);
    pcre2_jit_stack_free(jit_stack_);
  }
  pcre2_match_data* match_data() const { return match_data_; }
  pcre2_match_context* context() const { return context_; }

 private:
  pcre2_match_data* match_data_ = nullptr;
  pcre2_match_context* context_ = nullptr;
  pcre2_jit_stack* jit_stack_ = nullptr;
};

ThreadMatchState& MatchState() {
  thread_local ThreadMatchState state;
  return state;
}

std::string Pcre2Message(int code) {
  PCRE2_UCHAR buffer[256];
  if (pcre2_get_error_message(code, buffer, sizeof(buffer)) < 0) {
    return Concat("PCRE2 error ", code);
  }
  return reinterpret_cast<const char*>(buffer);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Regex>> Regex::Create(std::string_view pattern) {
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP, &error_code, &error_offset, nullptr);
  if (code == nullptr) {
    return absl::InvalidArgumentError(Concat("invalid regex \"", pattern, "\" at offset ",
                                                   error_offset, ": ", Pcre2Message(error_code)));
  }
  // JIT is an optimisation only: without it (unsupported CPU, W^X policy)
  // pcre2_match interprets the same pattern with the same results.
  const bool jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  return std::unique_ptr<Regex>(new Regex(std::string(pattern), code, jit));
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

absl::Status Regex::FindAll(std::string_view text,
                            std::vector<std::pair<size_t, size_t>>* out) const {
  if (!IsValidUtf8(text)) {
    return absl::InvalidArgumentError("regex subject is not valid UTF-8");
  }
  auto* code = static_cast<pcre2_code*>(code_);
  ThreadMatchState& state = MatchState();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  bool have_last_end = false;
  size_t last_end = 0;
  while (pos <= text.size()) {
    // The subject was validated once above; rechecking on every call would
    // make long inputs quadratic.
    int rc = pcre2_match(code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK,
                         state.match_data(), state.context());
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      rc = pcre2_match(code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                       state.match_data(), state.context());
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      return absl::ResourceExhaustedError(
          Concat("regex \"", pattern_, "\" failed: ", Pcre2Message(rc)));
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(state.match_data());
    const size_t start = ovector[0];
    const size_t end = ovector[1];
    if (start < pos || end < start || end > text.size()) {
      // Only \K tricks can do this; refuse rather than mis-split.
      return absl::InvalidArgumentError(
          Concat("regex \"", pattern_, "\" produced an inverted match"));
    }
    if (start == end && have_last_end && last_end == end) {
      if (pos >= text.size()) break;
      pos += Utf8CharLength(text, pos);
      continue;
    }
    out->emplace_back(start, end);
    have_last_end = true;
    last_end = end;
    pos = end;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Pattern>> Pattern::FromJson(const Json& json,
                                                           std::string_view component) {
  if (const Json* s = FindField(json, "String"); s != nullptr) {
    if (!s->is_string()) {
      return absl::InvalidArgumentError(
          Concat(component, ".pattern.String must be a string, got ", Describe(*s)));
    }
    return Literal(s->get_ref<const std::string&>());
  }
  if (const Json* r = FindField(json, "Regex"); r != nullptr) {
    if (!r->is_string()) {
      return absl::InvalidArgumentError(
          Concat(component, ".pattern.Regex must be a string, got ", Describe(*r)));
    }
    auto regex = FromRegex(r->get_ref<const std::string&>());
    if (!regex.ok()) {
      return absl::InvalidArgumentError(
          Concat(component, ".pattern: ", regex.status().message()));
    }
    return regex;
  }
  return absl::InvalidArgumentError(Concat(
      component, ".pattern must be {\"String\": ...} or {\"Regex\": ...}, got ", Describe(json)));
}

std::unique_ptr<Pattern> Pattern::Literal(std::string literal) {
  std::unique_ptr<Pattern> pattern(new Pattern());
  pattern->literal_ = std::move(literal);
  return pattern;
}

absl::StatusOr<std::unique_ptr<Pattern>> Pattern::FromRegex(std::string_view regex) {
  auto compiled = Regex::Create(regex);
  if (!compiled.ok()) return compiled.status();
  std::unique_ptr<Pattern> pattern(new Pattern());
  pattern->regex_ = *std::move(compiled);
  return pattern;
}

absl::Status Pattern::FindMatches(std::string_view text, std::vector<Match>* out) const {
  out->clear();
  if (text.empty()) {
    out->push_back({0, 0, false});
    return absl::OkStatus();
  }
  std::vector<std::pair<size_t, size_t>> ranges;
  if (regex_ != nullptr) {
    if (absl::Status s = regex_->FindAll(text, &ranges); !s.ok()) return s;
  } else if (!literal_.empty()) {
    // Rust's str::match_indices: non-overlapping, left to right.
    size_t pos = 0;
    while ((pos = text.find(literal_, pos)) != std::string_view::npos) {
      ranges.emplace_back(pos, pos + literal_.size());
      pos += literal_.size();
    }
  }
  size_t prev = 0;
  for (const auto& [start, end] : ranges) {
    if (prev != start) out->push_back({prev, start, false});
    out->push_back({start, end, true});
    prev = end;
  }
  if (prev != text.size()) out->push_back({prev, text.size(), false});
  return absl::OkStatus();
}

absl::StatusOr<SplitBehavior> ParseSplitBehavior(std::string_view name,
                                                 std::string_view component) {
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  return absl::InvalidArgumentError(Concat(component, ".behavior \"", name,
                                                 "\" is not one of Removed, Isolated, "
                                                 "MergedWithPrevious, MergedWithNext, Contiguous"));
}

std::vector<std::pair<size_t, size_t>> ApplySplitBehavior(const std::vector<Match>& matches,
                                                          SplitBehavior behavior) {
  struct Range {
    size_t start, end;
    bool remove;
  };
  std::vector<Range> acc;
  acc.reserve(matches.size());
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (const Match& m : matches) acc.push_back({m.start, m.end, false});
      break;
    case SplitBehavior::kRemoved:
      for (const Match& m : matches) acc.push_back({m.start, m.end, m.is_match});
      break;
    case SplitBehavior::kContiguous: {
      bool previous_match = false;
      for (const Match& m : matches) {
        if (m.is_match == previous_match && !acc.empty()) {
          acc.back().end = m.end;
        } else {
          acc.push_back({m.start, m.end, false});
        }
        previous_match = m.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const Match& m : matches) {
        if (m.is_match && !previous_match && !acc.empty()) {
          acc.back().end = m.end;
        } else {
          acc.push_back({m.start, m.end, false});
        }
        previous_match = m.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool previous_match = false;
      for (auto it = matches.rbegin(); it != matches.rend(); ++it) {
        if (it->is_match && !previous_match && !acc.empty()) {
          acc.back().start = it->start;
        } else {
          acc.push_back({it->start, it->end, false});
        }
        previous_match = it->is_match;
      }
      std::reverse(acc.begin(), acc.end());
      break;
    }
  }
  std::vector<std::pair<size_t, size_t>> out;
  out.reserve(acc.size());
  for (const Range& r : acc) {
    if (!r.remove && r.end > r.start) out.emplace_back(r.start, r.end);
  }
  return out;
}

}  // namespace kestrel::tokenizer
