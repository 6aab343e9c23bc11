#include "model/tokenizer/normalizers.h"

#include <unicode/normalizer2.h>
#include <unicode/unistr.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/tokenizer/pattern.h"
#include "model/tokenizer/unicode_util.h"

namespace kestrel::tokenizer {
namespace {

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts)
      : parts_(std::move(parts)) {}
  absl::Status Normalize(std::string* text) const override {
    for (const auto& part : parts_) RETURN_IF_ERROR(part->Normalize(text));
    return absl::OkStatus();
  }

 private:
  const std::vector<std::unique_ptr<Normalizer>> parts_;
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  absl::Status Normalize(std::string* text) const override {
    // The reference leaves empty pieces empty, so "" never becomes "▁".
    if (!text->empty()) *text = prefix_ + *text;
    return absl::OkStatus();
  }

 private:
  const std::string prefix_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(std::unique_ptr<Pattern> pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  absl::Status Normalize(std::string* text) const override {
    std::vector<Match> matches;
    RETURN_IF_ERROR(pattern_->FindMatches(*text, &matches));
    std::string out;
    out.reserve(text->size());
    for (const Match& m : matches) {
      if (m.is_match) {
        out += content_;
      } else {
        out.append(*text, m.start, m.end - m.start);
      }
    }
    *text = std::move(out);
    return absl::OkStatus();
  }

 private:
  const std::unique_ptr<Pattern> pattern_;
  const std::string content_;
};

class UnicodeNormalizer : public Normalizer {
 public:
  UnicodeNormalizer(const icu::Normalizer2* normalizer, std::string name)
      : normalizer_(normalizer), name_(std::move(name)) {}
  absl::Status Normalize(std::string* text) const override {
    UErrorCode status = U_ZERO_ERROR;
    icu::UnicodeString source = icu::UnicodeString::fromUTF8(*text);
    // Most text is already normalized; skipping the copy keeps NFC cheap.
    if (normalizer_->isNormalized(source, status) && U_SUCCESS(status)) return absl::OkStatus();
    status = U_ZERO_ERROR;
    icu::UnicodeString result = normalizer_->normalize(source, status);
    if (U_FAILURE(status)) {
      return absl::InternalError(
          Concat("normalizer ", name_, " failed: ", u_errorName(status)));
    }
    text->clear();
    result.toUTF8String(*text);
    return absl::OkStatus();
  }

 private:
  const icu::Normalizer2* const normalizer_;  // not owned: an ICU singleton
  const std::string name_;
};

class LowercaseNormalizer : public Normalizer {
 public:
  absl::Status Normalize(std::string* text) const override {
    *text = LowercaseRust(*text);
    return absl::OkStatus();
  }
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  absl::Status Normalize(std::string* text) const override {
    size_t begin = 0;
    size_t end = text->size();
    if (left_) {
      while (begin < end) {
        size_t next = begin;
        if (!IsWhitespace(DecodeUtf8(*text, &next))) break;
        begin = next;
      }
    }
    if (right_) {
      while (end > begin) {
        size_t start = end - 1;
        while (start > begin && (static_cast<unsigned char>((*text)[start]) & 0xC0) == 0x80) {
          --start;
        }
        size_t next = start;
        if (!IsWhitespace(DecodeUtf8(*text, &next))) break;
        end = start;
      }
    }
    *text = text->substr(begin, end - begin);
    return absl::OkStatus();
  }

 private:
  const bool left_;
  const bool right_;
};

class StripAccentsNormalizer : public Normalizer {
 public:
  absl::Status Normalize(std::string* text) const override {
    std::string out;
    out.reserve(text->size());
    size_t pos = 0;
    while (pos < text->size()) {
      const char32_t c = DecodeUtf8(*text, &pos);
      if (!IsCombiningMark(c)) AppendUtf8(c, &out);
    }
    *text = std::move(out);
    return absl::OkStatus();
  }
};

absl::StatusOr<std::unique_ptr<Normalizer>> MakeUnicode(const std::string& type) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* normalizer = nullptr;
  if (type == "NFC") normalizer = icu::Normalizer2::getNFCInstance(status);
  if (type == "NFD") normalizer = icu::Normalizer2::getNFDInstance(status);
  if (type == "NFKC") normalizer = icu::Normalizer2::getNFKCInstance(status);
  if (type == "NFKD") normalizer = icu::Normalizer2::getNFKDInstance(status);
  if (normalizer == nullptr || U_FAILURE(status)) {
    return absl::InternalError(
        Concat("normalizer ", type, ": ICU data unavailable: ", u_errorName(status)));
  }
  return std::make_unique<UnicodeNormalizer>(normalizer, type);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Normalizer>> Normalizer::FromJson(const Json& json) {
  ASSIGN_OR_RETURN(const std::string type, GetComponentType(json, "normalizer"));
  const std::string component = Concat("normalizer ", type);
  if (type == "Sequence") {
    ASSIGN_OR_RETURN(auto parts, ParseSequence<Normalizer>(json, "normalizers", component));
    return std::make_unique<SequenceNormalizer>(std::move(parts));
  }
  if (type == "Prepend") {
    ASSIGN_OR_RETURN(std::string prefix, GetString(json, "prepend", component));
    return std::make_unique<PrependNormalizer>(std::move(prefix));
  }
  if (type == "Replace") {
    const Json* pattern_json = FindField(json, "pattern");
    if (pattern_json == nullptr) {
      return absl::InvalidArgumentError(Concat(component, ": missing field \"pattern\""));
    }
    ASSIGN_OR_RETURN(auto pattern, Pattern::FromJson(*pattern_json, component));
    ASSIGN_OR_RETURN(std::string content, GetString(json, "content", component));
    return std::make_unique<ReplaceNormalizer>(std::move(pattern), std::move(content));
  }
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") return MakeUnicode(type);
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (type == "Strip") {
    ASSIGN_OR_RETURN(bool left, GetBoolOr(json, "strip_left", true, component));
    ASSIGN_OR_RETURN(bool right, GetBoolOr(json, "strip_right", true, component));
    return std::make_unique<StripNormalizer>(left, right);
  }
  if (type == "StripAccents") return std::make_unique<StripAccentsNormalizer>();
  return absl::UnimplementedError(
      Concat("unsupported normalizer type \"", type,
                   "\" (supported: Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD, Lowercase, "
                   "Strip, StripAccents)"));
}

}  // namespace kestrel::tokenizer
