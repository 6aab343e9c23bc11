#include "model/chat/chat_template.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace kestrel::chat {
namespace {

using Json = nlohmann::ordered_json;

// The special-token attributes transformers puts in special_tokens_map.
constexpr const char* kSpecialTokenNames[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                              "pad_token", "cls_token", "mask_token"};

// A token written as "<s>" or as an AddedToken dict {"content": "<s>", ...}.
std::optional<std::string> TokenText(const Json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object()) {
    const auto content = value.find("content");
    if (content != value.end() && content->is_string()) return content->get<std::string>();
  }
  return std::nullopt;
}

SpecialTokens ReadSpecialTokens(const Json& config) {
  SpecialTokens special;
  for (const char* name : kSpecialTokenNames) {
    const auto it = config.find(name);
    if (it == config.end()) continue;
    if (auto text = TokenText(*it)) special.tokens[name] = *text;
  }
  const auto extra = config.find("additional_special_tokens");
  if (extra != config.end() && extra->is_array()) {
    for (const Json& token : *extra) {
      if (auto text = TokenText(token)) special.additional_special_tokens.push_back(*text);
    }
  }
  return special;
}

// tokenizer_config.json's chat_template: a string, or [{"name", "template"}].
absl::StatusOr<std::map<std::string, std::string>> ReadConfigTemplates(const Json& config,
                                                                       const std::string& path) {
  std::map<std::string, std::string> templates;
  const auto it = config.find("chat_template");
  if (it == config.end() || it->is_null()) return templates;
  if (it->is_string()) {
    templates["default"] = it->get<std::string>();
    return templates;
  }
  if (!it->is_array()) {
    return absl::InvalidArgumentError(path + ": chat_template must be a string or a list of "
                                      "{\"name\", \"template\"} objects, got " + it->type_name());
  }
  for (const Json& entry : *it) {
    const auto name = entry.is_object() ? entry.find("name") : entry.end();
    const auto source = entry.is_object() ? entry.find("template") : entry.end();
    if (!entry.is_object() || name == entry.end() || !name->is_string() || source == entry.end() ||
        !source->is_string()) {
      return absl::InvalidArgumentError(
          path + ": each chat_template entry must be {\"name\": string, \"template\": string}, got " +
          entry.dump());
    }
    templates[name->get<std::string>()] = source->get<std::string>();
  }
  return templates;
}

std::string Names(const std::map<std::string, std::shared_ptr<const Template>>& templates) {
  std::vector<std::string> names;
  for (const auto& [name, unused] : templates) names.push_back(name);
  return absl::StrJoin(names, ", ");
}

}  // namespace

absl::StatusOr<ChatTemplate> ChatTemplate::LoadFromDirectory(const std::string& model_dir,
                                                             TemplateOptions options) {
  const std::filesystem::path dir(model_dir);
  const std::filesystem::path config_path = dir / "tokenizer_config.json";
  Json config = Json::object();
  if (std::filesystem::exists(config_path)) {
    ASSIGN_OR_RETURN(std::string text, ReadFileToString(config_path));
    config = Json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (config.is_discarded() || !config.is_object()) {
      return absl::InvalidArgumentError(config_path.string() + ": not a JSON object");
    }
  }
  std::map<std::string, std::string> sources;
  // transformers reads chat_template.jinja over the config's template.
  const std::filesystem::path jinja_path = dir / "chat_template.jinja";
  std::filesystem::path source_path = config_path;
  if (std::filesystem::exists(jinja_path)) {
    ASSIGN_OR_RETURN(sources["default"], ReadFileToString(jinja_path));
    source_path = jinja_path;
  } else {
    ASSIGN_OR_RETURN(sources, ReadConfigTemplates(config, config_path.string()));
  }
  if (sources.empty()) {
    return absl::NotFoundError(absl::StrCat(
        model_dir, " has no chat template (no chat_template.jinja, no chat_template in "
                   "tokenizer_config.json)"));
  }
  auto chat = CreateNamed(std::move(sources), ReadSpecialTokens(config), std::move(options));
  if (!chat.ok()) {
    return absl::Status(chat.status().code(),
                        absl::StrCat(source_path.string(), ": ", chat.status().message()));
  }
  return chat;
}

absl::StatusOr<ChatTemplate> ChatTemplate::Create(std::string source, SpecialTokens special_tokens,
                                                  TemplateOptions options) {
  return CreateNamed({{"default", std::move(source)}}, std::move(special_tokens), std::move(options));
}

absl::StatusOr<ChatTemplate> ChatTemplate::CreateNamed(std::map<std::string, std::string> sources,
                                                       SpecialTokens special_tokens,
                                                       TemplateOptions options) {
  std::map<std::string, std::shared_ptr<const Template>> templates;
  for (auto& [name, source] : sources) {
    auto parsed = Template::Parse(source, options);
    if (!parsed.ok()) {
      // Parse's errors read "chat template line N: ..."; a model with
      // several templates also says which.
      if (sources.size() == 1) return parsed.status();
      return absl::Status(parsed.status().code(), absl::StrCat("chat template '", name, "': ",
                                                               parsed.status().message()));
    }
    templates[name] = std::make_shared<const Template>(std::move(*parsed));
  }
  return ChatTemplate(std::move(templates), std::move(special_tokens));
}

absl::StatusOr<const Template*> ChatTemplate::Select(const ChatRequest& request) const {
  if (!request.template_name.empty()) {
    const auto it = templates_.find(request.template_name);
    if (it == templates_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("no chat template named '", request.template_name,
                                                     "' (the model has: ", Names(templates_), ")"));
    }
    return it->second.get();
  }
  if (!request.tools.is_null()) {
    if (const auto it = templates_.find("tool_use"); it != templates_.end()) return it->second.get();
  }
  if (const auto it = templates_.find("default"); it != templates_.end()) return it->second.get();
  return absl::InvalidArgumentError(absl::StrCat(
      "the model has no default chat template; name one of: ", Names(templates_)));
}

absl::StatusOr<std::string> ChatTemplate::Render(const ChatRequest& request) const {
  ASSIGN_OR_RETURN(const Template* chosen, Select(request));
  if (!request.messages.is_array()) {
    return absl::InvalidArgumentError(std::string("messages must be a JSON array, got ") +
                                      request.messages.type_name());
  }
  if (!request.extra.is_null() && !request.extra.is_object()) {
    return absl::InvalidArgumentError(std::string("extra keyword arguments must be a JSON object, got ") +
                                      request.extra.type_name());
  }
  // The keyword arguments of transformers' compiled_template.render(...).
  DictData context;
  context.Set("messages", Value::FromJson(request.messages));
  context.Set("tools", Value::FromJson(request.tools));
  context.Set("documents", Value::FromJson(request.documents));
  context.Set("add_generation_prompt", request.add_generation_prompt);
  for (const auto& [name, text] : special_tokens_.tokens) context.Set(name, text);
  if (!special_tokens_.additional_special_tokens.empty()) {
    std::vector<Value> tokens(special_tokens_.additional_special_tokens.begin(),
                              special_tokens_.additional_special_tokens.end());
    context.Set("additional_special_tokens", Value::MakeList(std::move(tokens)));
  }
  if (request.extra.is_object()) {
    for (const auto& [name, value] : request.extra.items()) {
      if (name == "messages" || name == "tools" || name == "documents" ||
          name == "add_generation_prompt") {
        return absl::InvalidArgumentError("extra keyword argument '" + name +
                                          "' repeats a chat template argument");
      }
      context.Set(name, Value::FromJson(value));
    }
  }
  return chosen->Render(context);
}

}  // namespace kestrel::chat
