#include "server/chat_prompt.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"

namespace kestrel::server {
namespace {

using Json = nlohmann::ordered_json;

absl::StatusOr<Json> ParseJsonField(const std::string& text, absl::string_view field, bool want_array) {
  Json value = Json::parse(text, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": not valid JSON: \"", text.substr(0, 80), text.size() > 80 ? "...\"" : "\""));
  }
  if (want_array ? !value.is_array() : !value.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": expected a JSON ", want_array ? "array" : "object",
                                                   ", got ", value.type_name()));
  }
  return value;
}

// A content given as parts ([{"type": "text", "text": ...}, ...]) becomes
// one string, as vLLM's "string" content format renders it.
absl::Status FlattenContent(Json& content, const std::string& field) {
  if (!content.is_array()) return absl::OkStatus();
  std::vector<std::string> texts;
  for (size_t i = 0; i < content.size(); ++i) {
    const Json& part = content[i];
    const std::string part_field = absl::StrCat(field, "[", i, "]");
    const auto type = part.is_object() ? part.find("type") : part.end();
    if (!part.is_object() || type == part.end() || !type->is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(part_field, ": expected {\"type\": \"text\", \"text\": ...}, got ", part.dump()));
    }
    if (*type != "text") {
      return absl::InvalidArgumentError(absl::StrCat(part_field, ".type: only \"text\" parts are supported, got ",
                                                     type->dump()));
    }
    const auto text = part.find("text");
    if (text == part.end() || !text->is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(part_field, ".text: expected a string"));
    }
    texts.push_back(text->get<std::string>());
  }
  content = absl::StrJoin(texts, "\n");
  return absl::OkStatus();
}

absl::Status NormalizeMessages(Json& messages) {
  if (!messages.is_array() || messages.empty()) {
    return absl::InvalidArgumentError("messages: expected at least one message");
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    Json& message = messages[i];
    const std::string field = absl::StrCat("messages[", i, "]");
    if (!message.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": expected an object, got ", message.type_name()));
    }
    const auto role = message.find("role");
    if (role == message.end() || !role->is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".role: expected a string"));
    }
    if (auto content = message.find("content"); content != message.end()) {
      if (!content->is_null() && !content->is_string() && !content->is_array()) {
        return absl::InvalidArgumentError(absl::StrCat(
            field, ".content: expected a string or a list of parts, got ", content->type_name()));
      }
      if (absl::Status s = FlattenContent(*content, field + ".content"); !s.ok()) return s;
    }
    const auto calls = message.find("tool_calls");
    if (calls == message.end() || calls->is_null()) continue;
    if (!calls->is_array()) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".tool_calls: expected an array, got ",
                                                     calls->type_name()));
    }
    for (Json& call : *calls) {
      const auto function = call.is_object() ? call.find("function") : call.end();
      if (function == call.end() || !function->is_object()) continue;
      const auto arguments = function->find("arguments");
      if (arguments == function->end() || !arguments->is_string()) continue;
      Json parsed = Json::parse(arguments->get<std::string>(), nullptr, /*allow_exceptions=*/false);
      if (!parsed.is_discarded() && parsed.is_object()) *arguments = std::move(parsed);
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> TemplateChatRenderer::Render(const ChatInput& input) const {
  chat::ChatRequest request;
  request.messages = input.messages;
  request.tools = input.tools;
  request.add_generation_prompt = input.add_generation_prompt;
  request.extra = input.template_kwargs;
  return template_.Render(request);
}

absl::StatusOr<std::unique_ptr<ChatRenderer>> LoadChatRenderer(const std::string& model_dir) {
  absl::StatusOr<chat::ChatTemplate> loaded = chat::ChatTemplate::LoadFromDirectory(model_dir);
  if (absl::IsNotFound(loaded.status())) return std::unique_ptr<ChatRenderer>();
  if (!loaded.ok()) return loaded.status();
  return std::make_unique<TemplateChatRenderer>(std::move(*loaded));
}

absl::StatusOr<ChatInput> ChatInputFromProto(const kestrel::v1::ChatPrompt& chat) {
  if (chat.messages_size() == 0) {
    return absl::InvalidArgumentError("chat.messages must hold at least one message, got 0");
  }
  ChatInput input;
  for (const kestrel::v1::ChatMessage& m : chat.messages()) {
    Json message = Json::object();
    message["role"] = m.role();
    message["content"] = m.has_content() ? Json(m.content()) : Json(nullptr);
    if (!m.name().empty()) message["name"] = m.name();
    if (!m.reasoning_content().empty()) message["reasoning_content"] = m.reasoning_content();
    if (!m.tool_call_id().empty()) message["tool_call_id"] = m.tool_call_id();
    if (m.tool_calls_size() > 0) {
      Json calls = Json::array();
      for (const kestrel::v1::ToolCall& call : m.tool_calls()) {
        Json function = {{"name", call.name()}, {"arguments", call.arguments()}};
        calls.push_back({{"id", call.id()}, {"type", "function"}, {"function", std::move(function)}});
      }
      message["tool_calls"] = std::move(calls);
    }
    input.messages.push_back(std::move(message));
  }
  if (!chat.tools_json().empty()) {
    absl::StatusOr<Json> tools = ParseJsonField(chat.tools_json(), "chat.tools_json", /*want_array=*/true);
    if (!tools.ok()) return tools.status();
    input.tools = std::move(*tools);
  }
  if (!chat.template_kwargs_json().empty()) {
    absl::StatusOr<Json> kwargs =
        ParseJsonField(chat.template_kwargs_json(), "chat.template_kwargs_json", /*want_array=*/false);
    if (!kwargs.ok()) return kwargs.status();
    input.template_kwargs = std::move(*kwargs);
  }
  input.add_generation_prompt = chat.has_add_generation_prompt() ? chat.add_generation_prompt() : true;
  return input;
}

absl::StatusOr<std::vector<int32_t>> EncodeChat(const ChatRenderer* renderer,
                                               const tokenizer::Tokenizer& tokenizer, ChatInput input) {
  if (renderer == nullptr) {
    return absl::FailedPreconditionError(
        "the model has no chat template (no chat_template.jinja, no chat_template in "
        "tokenizer_config.json): send a text prompt instead");
  }
  if (absl::Status s = NormalizeMessages(input.messages); !s.ok()) return s;
  if (!input.template_kwargs.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat("chat_template_kwargs: expected an object, got ",
                                                   input.template_kwargs.type_name()));
  }
  absl::StatusOr<std::string> text = renderer->Render(input);
  if (!text.ok()) {
    // A template's raise_exception and its limits (a conversation too large
    // to render) are both the request's fault: INVALID_ARGUMENT, never the
    // RESOURCE_EXHAUSTED that clients retry as a full queue.
    return absl::InvalidArgumentError(absl::StrCat("chat template: ", text.status().message()));
  }
  tokenizer::EncodeOptions options;
  options.add_special_tokens = false;
  options.parse_special_tokens = true;
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer.Encode(*text, options);
  if (!ids.ok()) return absl::InvalidArgumentError(absl::StrCat("messages: ", ids.status().message()));
  if (ids->empty()) return absl::InvalidArgumentError("messages: the chat template rendered an empty prompt");
  return ids;
}

}  // namespace kestrel::server
