// The logic of the `kestrel-chat-template` command, kept in a library so
// tests drive exactly what users run:
//
//   {"messages": [...], "tools": [...], "documents": [...],
//    "options": {"add_generation_prompt": true, ...extra keyword arguments}}
//     -> {"rendered": "...", "ids": [...]}
//
// `ids` is the rendered text tokenized without adding special tokens again
// (the template writes them) and with special-token text recognised. A line
// that cannot be processed, or whose template raises, yields {"error": "..."}.
#ifndef KESTREL_MODEL_CHAT_CHAT_TEMPLATE_TOOL_H_
#define KESTREL_MODEL_CHAT_CHAT_TEMPLATE_TOOL_H_

#include <istream>
#include <ostream>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "model/chat/chat_template.h"
#include "model/tokenizer/tokenizer.h"

namespace kestrel::chat {

// Processes one input line; returns the output JSON line (no newline), or
// an error for a malformed line or a failed render.
absl::StatusOr<std::string> ProcessChatTemplateLine(const ChatTemplate& chat,
                                                    const tokenizer::Tokenizer& tokenizer,
                                                    std::string_view line);

// Runs the command over `in`, writing one line to `out` per non-empty input
// line. Returns the number of lines that produced {"error": ...}.
size_t RunChatTemplateTool(const ChatTemplate& chat, const tokenizer::Tokenizer& tokenizer,
                           std::istream& in, std::ostream& out);

}  // namespace kestrel::chat

#endif  // KESTREL_MODEL_CHAT_CHAT_TEMPLATE_TOOL_H_
