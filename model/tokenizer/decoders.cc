#include "model/tokenizer/decoders.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/tokenizer/pattern.h"
#include "model/tokenizer/unicode_util.h"

namespace kestrel::tokenizer {
namespace {

constexpr char kReplacementChar[] = "\xEF\xBF\xBD";

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> parts)
      : parts_(std::move(parts)) {}
  absl::Status DecodeChain(std::vector<std::string>* tokens) const override {
    for (const auto& part : parts_) RETURN_IF_ERROR(part->DecodeChain(tokens));
    return absl::OkStatus();
  }
  bool HasByteFallback() const override {
    for (const auto& part : parts_) {
      if (part->HasByteFallback()) return true;
    }
    return false;
  }

 private:
  const std::vector<std::unique_ptr<Decoder>> parts_;
};

class ByteLevelDecoder : public Decoder {
 public:
  absl::Status DecodeChain(std::vector<std::string>* tokens) const override {
    std::string bytes;
    for (const std::string& token : *tokens) {
      const size_t mark = bytes.size();
      bool mapped = true;
      size_t pos = 0;
      while (pos < token.size()) {
        const int b = UnicodeToByte(DecodeUtf8(token, &pos));
        if (b < 0) {
          mapped = false;
          break;
        }
        bytes.push_back(static_cast<char>(b));
      }
      // A token outside the byte alphabet (e.g. an added token) is kept as is.
      if (!mapped) {
        bytes.resize(mark);
        bytes += token;
      }
    }
    tokens->assign(1, Utf8Lossy(bytes));
    return absl::OkStatus();
  }
};

class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(char32_t replacement, bool prepend)
      : replacement_(replacement), prepend_(prepend) {}
  absl::Status DecodeChain(std::vector<std::string>* tokens) const override {
    for (size_t i = 0; i < tokens->size(); ++i) {
      std::string& token = (*tokens)[i];
      std::string out;
      size_t pos = 0;
      while (pos < token.size()) {
        const char32_t c = DecodeUtf8(token, &pos);
        if (c == replacement_) {
          // The reference drops every marker of the first token when a
          // prefix space was added at encode time.
          if (!(i == 0 && prepend_)) out.push_back(' ');
        } else {
          AppendUtf8(c, &out);
        }
      }
      token = std::move(out);
    }
    return absl::OkStatus();
  }

 private:
  const char32_t replacement_;
  const bool prepend_;
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(std::unique_ptr<Pattern> pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  absl::Status DecodeChain(std::vector<std::string>* tokens) const override {
    std::vector<Match> matches;
    for (std::string& token : *tokens) {
      RETURN_IF_ERROR(pattern_->FindMatches(token, &matches));
      if (matches.size() == 1 && !matches[0].is_match) continue;
      std::string out;
      for (const Match& m : matches) {
        if (m.is_match) {
          out += content_;
        } else {
          out.append(token, m.start, m.end - m.start);
        }
      }
      token = std::move(out);
    }
    return absl::OkStatus();
  }

 private:
  const std::unique_ptr<Pattern> pattern_;
  const std::string content_;
};

class ByteFallbackDecoder : public Decoder {
 public:
  absl::Status DecodeChain(std::vector<std::string>* tokens) const override {
    std::vector<std::string> out;
    out.reserve(tokens->size());
    std::string pending;  // bytes of the current run of byte tokens
    auto flush = [&] {
      if (pending.empty()) return;
      if (IsValidUtf8(pending)) {
        out.push_back(pending);
      } else {
        // An invalid run becomes one U+FFFD per byte, not per subpart.
        for (size_t i = 0; i < pending.size(); ++i) out.emplace_back(kReplacementChar);
      }
      pending.clear();
    };
    for (std::string& token : *tokens) {
      const int byte = ParseByteToken(token);
      if (byte >= 0) {
        pending.push_back(static_cast<char>(byte));
        continue;
      }
      flush();
      out.push_back(std::move(token));
    }
    flush();
    *tokens = std::move(out);
    return absl::OkStatus();
  }
  bool HasByteFallback() const override { return true; }
};

class FuseDecoder : public Decoder {
 public:
  absl::Status DecodeChain(std::vector<std::string>* tokens) const override {
    std::string all;
    for (const std::string& token : *tokens) all += token;
    tokens->assign(1, std::move(all));
    return absl::OkStatus();
  }
};

class StripDecoder : public Decoder {
 public:
  StripDecoder(char32_t content, size_t start, size_t stop)
      : content_(content), start_(start), stop_(stop) {}
  absl::Status DecodeChain(std::vector<std::string>* tokens) const override {
    for (std::string& token : *tokens) {
      std::vector<char32_t> chars;
      size_t pos = 0;
      while (pos < token.size()) chars.push_back(DecodeUtf8(token, &pos));
      size_t begin = 0;
      for (size_t i = 0; i < start_ && i < chars.size() && chars[i] == content_; ++i) begin = i + 1;
      size_t end = chars.size();
      for (size_t i = 0; i < stop_ && i < chars.size(); ++i) {
        const size_t index = chars.size() - i - 1;
        if (chars[index] != content_) break;
        end = index;
      }
      std::string out;
      for (size_t i = begin; i < end; ++i) AppendUtf8(chars[i], &out);
      token = std::move(out);
    }
    return absl::OkStatus();
  }

 private:
  const char32_t content_;
  const size_t start_;
  const size_t stop_;
};

absl::StatusOr<char32_t> SingleChar(const Json& json, std::string_view key, std::string_view fallback,
                                    const std::string& component) {
  ASSIGN_OR_RETURN(std::string text, GetStringOr(json, key, fallback, component));
  size_t pos = 0;
  const char32_t c = text.empty() ? 0 : DecodeUtf8(text, &pos);
  if (text.empty() || pos != text.size()) {
    return absl::InvalidArgumentError(Concat(component, ".", key,
                                                   " must be a single character, got \"", text,
                                                   "\""));
  }
  return c;
}

}  // namespace

int ParseByteToken(const std::string& token) {
  if (token.size() != 6 || token.compare(0, 3, "<0x") != 0 || token[5] != '>') return -1;
  const int hi = HexValue(token[3]);
  const int lo = HexValue(token[4]);
  if (hi < 0 || lo < 0) return -1;
  return hi * 16 + lo;
}

absl::StatusOr<std::unique_ptr<Decoder>> Decoder::FromJson(const Json& json) {
  ASSIGN_OR_RETURN(const std::string type, GetComponentType(json, "decoder"));
  const std::string component = Concat("decoder ", type);
  if (type == "Sequence") {
    ASSIGN_OR_RETURN(auto parts, ParseSequence<Decoder>(json, "decoders", component));
    return std::make_unique<SequenceDecoder>(std::move(parts));
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Metaspace") {
    ASSIGN_OR_RETURN(char32_t replacement, SingleChar(json, "replacement", "\u2581", component));
    bool prepend = true;
    if (const Json* scheme = FindField(json, "prepend_scheme"); scheme != nullptr) {
      if (!scheme->is_string() || (*scheme != "always" && *scheme != "first" && *scheme != "never")) {
        return absl::InvalidArgumentError(Concat(
            component, ".prepend_scheme must be \"always\", \"first\" or \"never\", got ",
            Describe(*scheme)));
      }
      prepend = *scheme != "never";
    } else {
      ASSIGN_OR_RETURN(prepend, GetBoolOr(json, "add_prefix_space", true, component));
    }
    return std::make_unique<MetaspaceDecoder>(replacement, prepend);
  }
  if (type == "Replace") {
    const Json* pattern_json = FindField(json, "pattern");
    if (pattern_json == nullptr) {
      return absl::InvalidArgumentError(Concat(component, ": missing field \"pattern\""));
    }
    ASSIGN_OR_RETURN(auto pattern, Pattern::FromJson(*pattern_json, component));
    ASSIGN_OR_RETURN(std::string content, GetString(json, "content", component));
    return std::make_unique<ReplaceDecoder>(std::move(pattern), std::move(content));
  }
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") {
    ASSIGN_OR_RETURN(char32_t content, SingleChar(json, "content", " ", component));
    ASSIGN_OR_RETURN(int64_t start, GetIntOr(json, "start", 0, component));
    ASSIGN_OR_RETURN(int64_t stop, GetIntOr(json, "stop", 0, component));
    if (start < 0 || stop < 0) {
      return absl::InvalidArgumentError(Concat(
          component, ".start/.stop must be non-negative, got ", start, "/", stop));
    }
    return std::make_unique<StripDecoder>(content, static_cast<size_t>(start),
                                          static_cast<size_t>(stop));
  }
  return absl::UnimplementedError(Concat(
      "unsupported decoder type \"", type,
      "\" (supported: ByteLevel, Metaspace, Sequence, Replace, ByteFallback, Fuse, Strip)"));
}

}  // namespace kestrel::tokenizer
