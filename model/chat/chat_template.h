// A model's chat template, rendered the way transformers'
// apply_chat_template renders it: the same template source (chat_template.jinja
// over tokenizer_config.json's chat_template), the same context (messages,
// tools, documents, add_generation_prompt, the special tokens, extra keyword
// arguments) and the same jinja2 semantics (template.h). See
// docs/chat-templates.md.
//
//   ASSIGN_OR_RETURN(ChatTemplate chat, ChatTemplate::LoadFromDirectory(dir));
//   ChatRequest request;
//   request.messages = nlohmann::ordered_json::parse(R"([{"role": "user", "content": "Hi"}])");
//   request.add_generation_prompt = true;
//   ASSIGN_OR_RETURN(std::string prompt, chat.Render(request));
#ifndef KESTREL_MODEL_CHAT_CHAT_TEMPLATE_H_
#define KESTREL_MODEL_CHAT_CHAT_TEMPLATE_H_

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "model/chat/template.h"
#include <nlohmann/json.hpp>

namespace kestrel::chat {

// The tokenizer's special tokens, which transformers passes to the template
// as variables (bos_token, eos_token, ...). Tokens a model does not define
// are absent, so the template sees them as undefined.
struct SpecialTokens {
  std::map<std::string, std::string> tokens;  // "bos_token" -> "<s>"
  std::vector<std::string> additional_special_tokens;
};

struct ChatRequest {
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  nlohmann::ordered_json tools;      // null when absent
  nlohmann::ordered_json documents;  // null when absent
  bool add_generation_prompt = false;
  // An object of extra keyword arguments, e.g. {"enable_thinking": false};
  // they override the special tokens and the fields above, as in Python.
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();
  // A named template of a model with several ("tool_use"); empty: "tool_use"
  // when tools are given and the model has one, else "default".
  std::string template_name;
};

// Immutable after creation; Render is const and thread-safe.
class ChatTemplate {
 public:
  // Reads `model_dir`'s chat_template.jinja, else the chat_template of its
  // tokenizer_config.json (a string, or a list of {name, template}), and the
  // special tokens from tokenizer_config.json. NOT_FOUND when the model has
  // no chat template; INVALID_ARGUMENT naming the line when a template does
  // not parse.
  static absl::StatusOr<ChatTemplate> LoadFromDirectory(const std::string& model_dir,
                                                        TemplateOptions options = {});

  // One template (named "default").
  static absl::StatusOr<ChatTemplate> Create(std::string source, SpecialTokens special_tokens,
                                             TemplateOptions options = {});

  // Several named templates, as tokenizer_config.json's list form.
  static absl::StatusOr<ChatTemplate> CreateNamed(std::map<std::string, std::string> sources,
                                                  SpecialTokens special_tokens,
                                                  TemplateOptions options = {});

  // The rendered prompt. INVALID_ARGUMENT for a template error (including
  // its raise_exception, e.g. roles that do not alternate) or a malformed
  // request; RESOURCE_EXHAUSTED when a limit of TemplateOptions is hit.
  absl::StatusOr<std::string> Render(const ChatRequest& request) const;

  const SpecialTokens& special_tokens() const { return special_tokens_; }

 private:
  ChatTemplate(std::map<std::string, std::shared_ptr<const Template>> templates,
               SpecialTokens special_tokens)
      : templates_(std::move(templates)), special_tokens_(std::move(special_tokens)) {}

  absl::StatusOr<const Template*> Select(const ChatRequest& request) const;

  std::map<std::string, std::shared_ptr<const Template>> templates_;
  SpecialTokens special_tokens_;
};

}  // namespace kestrel::chat

#endif  // KESTREL_MODEL_CHAT_CHAT_TEMPLATE_H_
