#include "model/chat/lexer.h"

#include <cctype>
#include <charconv>

#include "absl/strings/str_cat.h"
#include "model/tokenizer/unicode_util.h"

namespace kestrel::chat {

bool IsPythonSpace(char32_t c) {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
         c == 0x202f || c == 0x205f || c == 0x3000;
}

absl::Status TemplateError(int line, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("chat template line ", line, ": ", std::string(what)));
}

namespace {

// The length of the run of Python whitespace at the start of `text`.
size_t LeadingSpace(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t next = pos;
    if (!IsPythonSpace(tokenizer::DecodeUtf8(text, &next))) break;
    pos = next;
  }
  return pos;
}

// `text` without its trailing Python whitespace (str.rstrip()).
std::string_view RightStrip(std::string_view text) {
  size_t keep = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    if (!IsPythonSpace(tokenizer::DecodeUtf8(text, &pos))) keep = pos;
  }
  return text.substr(0, keep);
}

bool IsNameStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool IsNameChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

class Lexer {
 public:
  explicit Lexer(std::string source) : src_(std::move(source)) {}

  absl::StatusOr<std::vector<Token>> Run() {
    bool line_starting = true;
    while (pos_ < src_.size()) {
      const size_t tag = FindTagStart(pos_);
      std::string_view text = std::string_view(src_).substr(pos_, tag - pos_);
      if (tag == src_.size()) {
        Emit(Token::Type::kText, text);
        Advance(text.size());
        break;
      }
      const char kind = src_[tag + 1];  // '{', '%' or '#'
      const char modifier = tag + 2 < src_.size() ? src_[tag + 2] : '\0';
      text = StripBeforeTag(text, kind, modifier, line_starting);
      Emit(Token::Type::kText, text);
      Advance(tag - pos_);
      const size_t begin_length = (modifier == '-' || modifier == '+') ? 3 : 2;
      if (kind == '#') {
        auto status = SkipComment(begin_length);
        if (!status.ok()) return status;
      } else {
        auto status = LexTag(kind, begin_length);
        if (!status.ok()) return status;
      }
      line_starting = pos_ > 0 && src_[pos_ - 1] == '\n';
    }
    tokens_.push_back(Token{Token::Type::kEnd, line_, "", 0, 0});
    return std::move(tokens_);
  }

 private:
  // The position of the next "{{", "{%" or "{#" at or after `from`, or the end.
  size_t FindTagStart(size_t from) const {
    for (size_t i = from; i + 1 < src_.size(); ++i) {
      if (src_[i] == '{' && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) {
        return i;
      }
    }
    return src_.size();
  }

  // The text before a tag after whitespace control: "{%-" strips all
  // trailing whitespace; lstrip_blocks removes the indentation before a
  // block or comment tag that starts its line (unless "{%+").
  static std::string_view StripBeforeTag(std::string_view text, char kind, char modifier,
                                         bool line_starting) {
    if (modifier == '-') return RightStrip(text);
    if (modifier == '+' || kind == '{') return text;
    const size_t line_start = text.rfind('\n') + 1;  // npos + 1 == 0
    if (line_start == 0 && !line_starting) return text;
    const std::string_view indent = text.substr(line_start);
    if (!indent.empty() && LeadingSpace(indent) == indent.size()) return text.substr(0, line_start);
    return text;
  }

  // Consumes a comment from its "{#" on, with the whitespace control of its end.
  absl::Status SkipComment(size_t begin_length) {
    const int start_line = line_;
    const size_t end = src_.find("#}", pos_ + begin_length);
    if (end == std::string::npos) return TemplateError(start_line, "unterminated comment '{#'");
    const bool strip_after = src_[end - 1] == '-' && end > pos_ + begin_length;
    const bool keep_newline = src_[end - 1] == '+' && end > pos_ + begin_length;
    Advance(end + 2 - pos_);
    SkipAfterTagEnd(strip_after, keep_newline);
    return absl::OkStatus();
  }

  // After a tag's end: "-%}" strips all following whitespace, trim_blocks
  // one newline after a block or comment (not after "+%}").
  void SkipAfterTagEnd(bool strip_after, bool keep_newline, bool is_block = true) {
    if (strip_after) {
      Advance(LeadingSpace(std::string_view(src_).substr(pos_)));
    } else if (is_block && !keep_newline && pos_ < src_.size() && src_[pos_] == '\n') {
      Advance(1);
    }
  }

  // Lexes "{{ ... }}" or "{% ... %}" from its opening brace.
  absl::Status LexTag(char kind, size_t begin_length) {
    const bool is_block = kind == '%';
    const int start_line = line_;
    Emit(is_block ? Token::Type::kBlockBegin : Token::Type::kOutputBegin, "");
    Advance(begin_length);
    const std::string_view close = is_block ? "%}" : "}}";
    int depth = 0;  // open brackets: "}}" inside {{ {'a': {}} }} is not an end
    while (true) {
      Advance(LeadingSpace(std::string_view(src_).substr(pos_)));
      if (pos_ >= src_.size()) {
        return TemplateError(start_line, absl::StrCat("unclosed tag: missing '", std::string(close), "'"));
      }
      if (depth == 0) {
        const std::string_view rest = std::string_view(src_).substr(pos_);
        const bool minus = rest.size() > 2 && rest[0] == '-' && rest.substr(1, 2) == close;
        const bool plus = is_block && rest.size() > 2 && rest[0] == '+' && rest.substr(1, 2) == close;
        if (minus || plus || rest.substr(0, 2) == close) {
          Emit(is_block ? Token::Type::kBlockEnd : Token::Type::kOutputEnd, "");
          Advance(minus || plus ? 3 : 2);
          SkipAfterTagEnd(minus, plus, is_block);
          return absl::OkStatus();
        }
      }
      auto status = LexToken(&depth);
      if (!status.ok()) return status;
    }
  }

  absl::Status LexToken(int* depth) {
    const char c = src_[pos_];
    if (IsNameStart(c)) {
      size_t end = pos_;
      while (end < src_.size() && IsNameChar(src_[end])) ++end;
      Emit(Token::Type::kName, std::string_view(src_).substr(pos_, end - pos_));
      Advance(end - pos_);
      return absl::OkStatus();
    }
    if (IsDigit(c)) return LexNumber();
    if (c == '\'' || c == '"') return LexString(c);
    static constexpr std::string_view kTwoChar[] = {"//", "**", "==", "!=", "<=", ">="};
    for (std::string_view op : kTwoChar) {
      if (std::string_view(src_).substr(pos_, 2) == op) {
        Emit(Token::Type::kOperator, op);
        Advance(2);
        return absl::OkStatus();
      }
    }
    if (std::string_view("+-*/%~<>=()[]{},.:|").find(c) == std::string_view::npos) {
      return TemplateError(line_, absl::StrCat("unexpected character '", std::string(1, c), "'"));
    }
    if (c == '(' || c == '[' || c == '{') ++*depth;
    if ((c == ')' || c == ']' || c == '}') && *depth > 0) --*depth;
    Emit(Token::Type::kOperator, std::string_view(&src_[pos_], 1));
    Advance(1);
    return absl::OkStatus();
  }

  absl::Status LexNumber() {
    size_t end = pos_;
    auto digits = [&] {
      while (end < src_.size() && (IsDigit(src_[end]) || (src_[end] == '_' && end + 1 < src_.size() &&
                                                           IsDigit(src_[end + 1])))) {
        ++end;
      }
    };
    digits();
    bool is_float = false;
    if (end + 1 < src_.size() && src_[end] == '.' && IsDigit(src_[end + 1])) {
      is_float = true;
      ++end;
      digits();
    }
    if (end < src_.size() && (src_[end] == 'e' || src_[end] == 'E')) {
      size_t exp = end + 1;
      if (exp < src_.size() && (src_[exp] == '+' || src_[exp] == '-')) ++exp;
      if (exp < src_.size() && IsDigit(src_[exp])) {
        is_float = true;
        end = exp;
        digits();
      }
    }
    std::string text;
    for (size_t i = pos_; i < end; ++i) {
      if (src_[i] != '_') text.push_back(src_[i]);
    }
    Token token{is_float ? Token::Type::kFloat : Token::Type::kInteger, line_, text, 0, 0};
    if (is_float) {
      token.number = std::strtod(text.c_str(), nullptr);
    } else {
      auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), token.integer);
      if (ec != std::errc()) {
        return TemplateError(line_, "integer literal " + text + " is out of range");
      }
    }
    tokens_.push_back(std::move(token));
    Advance(end - pos_);
    return absl::OkStatus();
  }

  // A quoted string with Python's escapes (\n, \t, \xNN, \uNNNN, ...); an
  // unknown escape keeps its backslash, as Python does.
  absl::Status LexString(char quote) {
    const int start_line = line_;
    std::string value;
    size_t i = pos_ + 1;
    while (true) {
      if (i >= src_.size()) return TemplateError(start_line, "unterminated string");
      const char c = src_[i];
      if (c == quote) break;
      if (c != '\\' || i + 1 >= src_.size()) {
        value.push_back(c);
        ++i;
        continue;
      }
      i = DecodeEscape(i, &value);
    }
    tokens_.push_back(Token{Token::Type::kString, start_line, std::move(value), 0, 0});
    Advance(i + 1 - pos_);
    return absl::OkStatus();
  }

  // Decodes the escape at src_[i] == '\\' into `out`; returns the position after it.
  size_t DecodeEscape(size_t i, std::string* out) const {
    const char e = src_[i + 1];
    static constexpr std::string_view kSimple = "nrtabfv\\'\"\n";
    static constexpr std::string_view kDecoded = "\n\r\t\a\b\f\v\\'\"";
    if (const size_t k = kSimple.find(e); k != std::string_view::npos) {
      if (e != '\n') out->push_back(kDecoded[k]);  // backslash-newline: a line continuation
      return i + 2;
    }
    const int hex_digits = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
    if (hex_digits > 0) {
      uint32_t code = 0;
      const char* first = src_.data() + i + 2;
      const char* last = src_.data() + std::min(src_.size(), i + 2 + hex_digits);
      auto [ptr, ec] = std::from_chars(first, last, code, 16);
      if (ec == std::errc() && ptr == first + hex_digits && code <= 0x10FFFF) {
        tokenizer::AppendUtf8(code, out);
        return i + 2 + hex_digits;
      }
    }
    if (e >= '0' && e <= '7') {
      uint32_t code = 0;
      size_t j = i + 1;
      while (j < src_.size() && j < i + 4 && src_[j] >= '0' && src_[j] <= '7') {
        code = code * 8 + (src_[j] - '0');
        ++j;
      }
      tokenizer::AppendUtf8(code, out);
      return j;
    }
    out->push_back('\\');
    return i + 1;
  }

  void Emit(Token::Type type, std::string_view text) {
    if (type == Token::Type::kText && text.empty()) return;
    tokens_.push_back(Token{type, line_, std::string(text), 0, 0});
  }

  // Moves past `n` source bytes, counting lines.
  void Advance(size_t n) {
    for (size_t i = 0; i < n; ++i) line_ += src_[pos_ + i] == '\n';
    pos_ += n;
  }

  std::string src_;
  size_t pos_ = 0;
  int line_ = 1;
  std::vector<Token> tokens_;
};

// jinja2 reads "\r\n" and "\r" as "\n" and, without keep_trailing_newline,
// drops one newline at the very end.
std::string NormalizeNewlines(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out.push_back(source[i]);
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

}  // namespace

absl::StatusOr<std::vector<Token>> Tokenize(std::string_view source) {
  return Lexer(NormalizeNewlines(source)).Run();
}

}  // namespace kestrel::chat
