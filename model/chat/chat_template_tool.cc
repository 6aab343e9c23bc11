#include "model/chat/chat_template_tool.h"

#include <vector>

#include "common/json_lines.h"
#include "common/status_macros.h"

namespace kestrel::chat {
namespace {

using Json = nlohmann::ordered_json;

std::string Dump(const Json& value) {
  return value.dump(-1, ' ', /*ensure_ascii=*/false, Json::error_handler_t::replace);
}

absl::StatusOr<ChatRequest> ParseRequest(std::string_view line) {
  Json input = Json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (input.is_discarded()) return absl::InvalidArgumentError("input line: not valid JSON");
  if (!input.is_object()) {
    return absl::InvalidArgumentError(std::string("input line must be a JSON object, got ") +
                                      input.type_name());
  }
  ChatRequest request;
  for (auto& [key, value] : input.items()) {
    if (key == "messages") {
      request.messages = std::move(value);
    } else if (key == "tools") {
      request.tools = std::move(value);
    } else if (key == "documents") {
      request.documents = std::move(value);
    } else if (key != "options") {
      return absl::InvalidArgumentError("input line: unknown field '" + key +
                                        "' (expected messages, tools, documents, options)");
    }
  }
  if (!input.contains("messages")) return absl::InvalidArgumentError("input line: missing 'messages'");
  const Json options = input.value("options", Json::object());
  if (!options.is_object()) {
    return absl::InvalidArgumentError(std::string("input line: options must be an object, got ") +
                                      options.type_name());
  }
  for (const auto& [key, value] : options.items()) {
    if (key == "add_generation_prompt") {
      if (!value.is_boolean()) {
        return absl::InvalidArgumentError("options.add_generation_prompt must be true or false, got " +
                                          value.dump());
      }
      request.add_generation_prompt = value.get<bool>();
    } else {
      request.extra[key] = value;  // extra keyword arguments, e.g. enable_thinking
    }
  }
  return request;
}

}  // namespace

absl::StatusOr<std::string> ProcessChatTemplateLine(const ChatTemplate& chat,
                                                    const tokenizer::Tokenizer& tokenizer,
                                                    std::string_view line) {
  ASSIGN_OR_RETURN(ChatRequest request, ParseRequest(line));
  ASSIGN_OR_RETURN(std::string rendered, chat.Render(request));
  tokenizer::EncodeOptions encode;
  encode.add_special_tokens = false;  // the template already wrote them
  encode.parse_special_tokens = true;
  ASSIGN_OR_RETURN(std::vector<int32_t> ids, tokenizer.Encode(rendered, encode));
  Json out = Json::object();
  out["rendered"] = std::move(rendered);
  out["ids"] = ids;
  return Dump(out);
}

size_t RunChatTemplateTool(const ChatTemplate& chat, const tokenizer::Tokenizer& tokenizer,
                           std::istream& in, std::ostream& out) {
  return RunJsonLines(in, out, [&](const std::string& line) {
    return ProcessChatTemplateLine(chat, tokenizer, line);
  });
}

}  // namespace kestrel::chat
