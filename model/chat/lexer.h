// Splits a Jinja template into tokens: literal text, and the tokens inside
// {{ }} and {% %} tags (comments are dropped). Whitespace control follows
// the jinja2 Environment that transformers uses for chat templates:
// trim_blocks and lstrip_blocks on, `-` and `+` modifiers, one trailing
// newline of the source dropped, "\r\n" and "\r" read as "\n".
#ifndef KESTREL_MODEL_CHAT_LEXER_H_
#define KESTREL_MODEL_CHAT_LEXER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kestrel::chat {

struct Token {
  enum class Type {
    kText,         // literal template text (text)
    kOutputBegin,  // {{
    kOutputEnd,    // }}
    kBlockBegin,   // {%
    kBlockEnd,     // %}
    kName,         // identifier or keyword (text)
    kString,       // string literal, escapes decoded (text)
    kInteger,      // integer literal (integer)
    kFloat,        // float literal (number)
    kOperator,     // punctuation and operators (text), e.g. "**", "|", "("
    kEnd,          // end of the template
  };
  Type type;
  int line;  // 1-based line where the token starts
  std::string text;
  int64_t integer = 0;
  double number = 0;
};

// Tokenizes `source`. Errors name the line: "chat template line 3:
// unterminated string".
absl::StatusOr<std::vector<Token>> Tokenize(std::string_view source);

// Python's str.isspace() for one code point.
bool IsPythonSpace(char32_t c);

// The formatted error every stage uses: "chat template line N: what".
absl::Status TemplateError(int line, std::string_view what);

}  // namespace kestrel::chat

#endif  // KESTREL_MODEL_CHAT_LEXER_H_
