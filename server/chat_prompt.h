// The one path from a conversation to prompt token ids, shared by the gRPC
// front end (GenerateRequest.chat) and the OpenAI one (/v1/chat/completions):
// both build a ChatInput in OpenAI's message shape, and EncodeChat normalizes
// it the way vLLM does, renders it with the model's chat template (a
// ChatRenderer) and tokenizes the text.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<ChatRenderer> renderer, LoadChatRenderer(model_dir));
//   ChatInput input;
//   input.messages = {{{"role", "user"}, {"content", "Hi"}}};
//   ASSIGN_OR_RETURN(std::vector<int32_t> ids, EncodeChat(renderer.get(), tokenizer, input));
#ifndef KESTREL_SERVER_CHAT_PROMPT_H_
#define KESTREL_SERVER_CHAT_PROMPT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kestrel/v1/generate.pb.h"
#include "model/chat/chat_template.h"
#include "model/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace kestrel::server {

struct ChatInput {
  // OpenAI's messages: [{"role": ..., "content": ..., ...}, ...].
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  // OpenAI's tools array; null when the request has none.
  nlohmann::ordered_json tools;
  // End with the opening of the assistant's turn.
  bool add_generation_prompt = true;
  // Extra template variables (vLLM's chat_template_kwargs, e.g.
  // {"enable_thinking": false}), an object.
  nlohmann::ordered_json template_kwargs = nlohmann::ordered_json::object();
};

// Turns a conversation into prompt text. Thread-safe: both front ends call
// Render concurrently (the HTTP one on its event loop, so it must not
// block for long).
class ChatRenderer {
 public:
  virtual ~ChatRenderer() = default;
  // `input` is normalized (EncodeChat): every content is a string or null.
  // INVALID_ARGUMENT for a message the template rejects.
  virtual absl::StatusOr<std::string> Render(const ChatInput& input) const = 0;
};

// The model's Jinja chat template (model/chat), rendered as transformers'
// apply_chat_template renders it.
class TemplateChatRenderer final : public ChatRenderer {
 public:
  explicit TemplateChatRenderer(chat::ChatTemplate chat_template)
      : template_(std::move(chat_template)) {}
  absl::StatusOr<std::string> Render(const ChatInput& input) const override;

 private:
  chat::ChatTemplate template_;
};

// The chat template of a Hugging Face model directory (chat_template.jinja,
// else tokenizer_config.json's chat_template). Null when the model has
// none; INVALID_ARGUMENT naming the file and line when it does not parse
// (the server refuses to start rather than serve a broken template).
absl::StatusOr<std::unique_ptr<ChatRenderer>> LoadChatRenderer(const std::string& model_dir);

// The gRPC request's conversation in OpenAI's shape. INVALID_ARGUMENT names
// the field (chat.messages, chat.tools_json, chat.template_kwargs_json)
// that is missing or not JSON of the right kind.
absl::StatusOr<ChatInput> ChatInputFromProto(const kestrel::v1::ChatPrompt& chat);

// Renders `input` with `renderer` and tokenizes the result. The template
// writes the special tokens (BOS, turn markers), so they are parsed in the
// rendered text and none is added; like transformers, that also parses
// special tokens a user wrote in a message. Before rendering, as vLLM does:
// a message's content given as a list of text parts becomes their text
// joined by newlines, and a tool call's `arguments` string that holds a
// JSON object becomes that object (templates index it).
// FAILED_PRECONDITION when the model has no chat template (`renderer`
// null); INVALID_ARGUMENT, naming the field, for a malformed message, a
// template error (its raise_exception, e.g. roles that do not alternate) or
// a render past the template's limits.
absl::StatusOr<std::vector<int32_t>> EncodeChat(const ChatRenderer* renderer,
                                               const tokenizer::Tokenizer& tokenizer,
                                               ChatInput input);

}  // namespace kestrel::server

#endif  // KESTREL_SERVER_CHAT_PROMPT_H_
