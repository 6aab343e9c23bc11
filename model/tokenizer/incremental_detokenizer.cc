#include "model/tokenizer/incremental_detokenizer.h"

#include <string_view>

#include "common/status_macros.h"

namespace kestrel::tokenizer {
namespace {

constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";

// Length of `text` without its trailing U+FFFD characters.
size_t WithoutTrailingReplacement(const std::string& text) {
  size_t len = text.size();
  while (len >= kReplacementChar.size() &&
         std::string_view(text).substr(len - kReplacementChar.size(), kReplacementChar.size()) ==
             kReplacementChar) {
    len -= kReplacementChar.size();
  }
  return len;
}

}  // namespace

absl::StatusOr<std::string> IncrementalDetokenizer::Add(int32_t id) {
  // Whole-sequence decode drops these ids too, so dropping them here keeps
  // the two identical.
  if (tokenizer_->IdToToken(id) == nullptr) return std::string();
  if (skip_special_tokens_ && tokenizer_->IsSpecialToken(id)) return std::string();
  window_.push_back(id);

  size_t stable = window_.size();
  while (stable > 0 && tokenizer_->IsByteFallbackToken(window_[stable - 1])) --stable;
  if (stable == 0) return std::string();
  ASSIGN_OR_RETURN(
      const std::string text,
      tokenizer_->Decode(absl::MakeConstSpan(window_.data(), stable), skip_special_tokens_));
  const size_t stable_len = WithoutTrailingReplacement(text);
  std::string delta;
  if (stable_len > emitted_) {
    delta = text.substr(emitted_, stable_len - emitted_);
    emitted_ = stable_len;
  }
  const bool clean = stable == window_.size() && stable_len == text.size();
  if (clean && window_.size() > kMaxWindow) {
    // Keep two ids: decoders strip at the start (SentencePiece's leading
    // space) and at the end (Strip with stop) of the text, so the first kept
    // id absorbs the leading effect and the last one's trailing text is
    // re-emitted once more text follows.
    window_.erase(window_.begin(), window_.end() - 2);
    ASSIGN_OR_RETURN(const std::string base, tokenizer_->Decode(window_, skip_special_tokens_));
    emitted_ = base.size();
  }
  return delta;
}

absl::StatusOr<std::string> IncrementalDetokenizer::Finish() {
  ASSIGN_OR_RETURN(const std::string text, tokenizer_->Decode(window_, skip_special_tokens_));
  std::string delta = text.size() > emitted_ ? text.substr(emitted_) : std::string();
  window_.clear();
  emitted_ = 0;
  return delta;
}

}  // namespace kestrel::tokenizer
