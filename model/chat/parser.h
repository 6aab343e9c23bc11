// Parses a chat template's tokens into a syntax tree (ast.h). The grammar
// and operator precedence are jinja2's; errors name the line and what was
// found: "chat template line 3: unexpected 'endfor'".
#ifndef KESTREL_MODEL_CHAT_PARSER_H_
#define KESTREL_MODEL_CHAT_PARSER_H_

#include <string_view>

#include "absl/status/statusor.h"
#include "model/chat/ast.h"

namespace kestrel::chat {

// Deeper nesting than this (brackets, blocks) is an error, so a hostile
// template cannot exhaust the stack while parsing or rendering.
inline constexpr int kMaxNestingDepth = 100;

absl::StatusOr<Body> ParseTemplate(std::string_view source);

}  // namespace kestrel::chat

#endif  // KESTREL_MODEL_CHAT_PARSER_H_
