// The chat path both front ends share: a real model's template (llama3's,
// from the shared data) rendered and tokenized with its special tokens as
// single ids, vLLM's normalization (text parts, tool-call arguments), the
// gRPC ChatPrompt conversion, and every error naming its field.
#include "server/chat_prompt.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>

#include "model/synthetic.h"
#include "testing/shared_data.h"

namespace kestrel::server {
namespace {

using Json = nlohmann::ordered_json;

const tokenizer::Tokenizer& ByteTokenizer() {
  static const tokenizer::Tokenizer* tokenizer = [] {
    auto t = tokenizer::Tokenizer::FromJson(model::SyntheticTokenizerJson(300), "", {});
    REQUIRE(t.ok());
    return t->release();
  }();
  return *tokenizer;
}

std::unique_ptr<ChatRenderer> Renderer(const std::string& source, chat::TemplateOptions options = {}) {
  chat::SpecialTokens special;
  special.tokens["bos_token"] = "<s>";
  special.tokens["eos_token"] = "</s>";
  absl::StatusOr<chat::ChatTemplate> t = chat::ChatTemplate::Create(source, special, options);
  REQUIRE(t.ok());
  return std::make_unique<TemplateChatRenderer>(std::move(*t));
}

std::vector<int32_t> Bytes(std::string_view text) {
  std::vector<int32_t> ids;
  for (char c : text) ids.push_back(static_cast<unsigned char>(c));
  return ids;
}

ChatInput Input(Json messages) {
  ChatInput input;
  input.messages = std::move(messages);
  return input;
}

absl::Status EncodeError(const ChatRenderer* renderer, Json messages) {
  absl::StatusOr<std::vector<int32_t>> ids = EncodeChat(renderer, ByteTokenizer(), Input(std::move(messages)));
  REQUIRE_FALSE(ids.ok());
  return ids.status();
}

TEST_CASE("llama3's template: rendered with its special tokens as single ids") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "tokenizers/llama3");
  absl::StatusOr<std::unique_ptr<ChatRenderer>> renderer = LoadChatRenderer(dir.string());
  REQUIRE(renderer.ok());
  REQUIRE(*renderer != nullptr);
  auto tokenizer = tokenizer::Tokenizer::LoadFromDirectory(dir.string(), {});
  REQUIRE(tokenizer.ok());

  // Content as text parts is joined by newlines, as vLLM renders it.
  Json messages = {{{"role", "system"}, {"content", "Be brief."}},
                   {{"role", "user"},
                    {"content", {{{"type", "text"}, {"text", "Hello"}}, {{"type", "text"}, {"text", "there"}}}}}};
  absl::StatusOr<std::vector<int32_t>> ids = EncodeChat(renderer->get(), **tokenizer, Input(messages));
  REQUIRE(ids.ok());
  tokenizer::EncodeOptions special;
  special.add_special_tokens = false;
  special.parse_special_tokens = true;
  const std::string expected_text =
      "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
      "<|start_header_id|>user<|end_header_id|>\n\nHello\nthere<|eot_id|>"
      "<|start_header_id|>assistant<|end_header_id|>\n\n";
  absl::StatusOr<std::vector<int32_t>> expected = (*tokenizer)->Encode(expected_text, special);
  REQUIRE(expected.ok());
  CHECK(*ids == *expected);
  CHECK(ids->front() == 128000);  // <|begin_of_text|>, once: none added
  CHECK(std::count(ids->begin(), ids->end(), 128009) == 2);  // <|eot_id|>

  // A directory without a template has no renderer; a broken one is an
  // error naming the line.
  const auto tmp = std::filesystem::temp_directory_path() / "kestrel_chat_prompt_test";
  std::filesystem::create_directories(tmp);
  std::ofstream(tmp / "tokenizer_config.json") << R"({"bos_token": "<s>"})";
  absl::StatusOr<std::unique_ptr<ChatRenderer>> none = LoadChatRenderer(tmp.string());
  REQUIRE(none.ok());
  CHECK(*none == nullptr);
  std::ofstream(tmp / "chat_template.jinja") << "{% for m in messages %}\n{{ m.content }\n{% endfor %}";
  absl::StatusOr<std::unique_ptr<ChatRenderer>> broken = LoadChatRenderer(tmp.string());
  REQUIRE_FALSE(broken.ok());
  CHECK(broken.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(broken.status().message().find("line 2") != std::string::npos);
  std::filesystem::remove_all(tmp);
}

TEST_CASE("tool calls: arguments given as a JSON string reach the template as a mapping") {
  auto renderer = Renderer(
      "{% for m in messages %}{% for call in m.tool_calls or [] %}"
      "{{ call.function.name }}({{ call.function.arguments.city }})"
      "{% endfor %}{% endfor %}{% for tool in tools %}/{{ tool.function.name }}{% endfor %}");
  ChatInput input = Input({{{"role", "assistant"},
                            {"content", nullptr},
                            {"tool_calls",
                             {{{"id", "c1"},
                               {"type", "function"},
                               {"function", {{"name", "weather"}, {"arguments", R"({"city": "Oslo"})"}}}}}}}});
  input.tools = {{{"type", "function"}, {"function", {{"name", "weather"}}}}};
  absl::StatusOr<std::vector<int32_t>> ids = EncodeChat(renderer.get(), ByteTokenizer(), input);
  REQUIRE(ids.ok());
  CHECK(*ids == Bytes("weather(Oslo)/weather"));
}

TEST_CASE("template variables: add_generation_prompt, kwargs, special tokens parsed") {
  auto renderer = Renderer(
      "{{ bos_token }}{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
      "{% if add_generation_prompt %}assistant:{% endif %}{% if enable_thinking is defined %}"
      "[think={{ enable_thinking }}]{% endif %}");
  ChatInput input = Input({{{"role", "user"}, {"content", "hi"}}});
  absl::StatusOr<std::vector<int32_t>> ids = EncodeChat(renderer.get(), ByteTokenizer(), input);
  REQUIRE(ids.ok());
  std::vector<int32_t> expected = {256};  // <s>, one id
  for (int32_t id : Bytes("user: hi\nassistant:")) expected.push_back(id);
  CHECK(*ids == expected);

  input.add_generation_prompt = false;
  input.template_kwargs = {{"enable_thinking", false}};
  ids = EncodeChat(renderer.get(), ByteTokenizer(), input);
  REQUIRE(ids.ok());
  expected = {256};
  for (int32_t id : Bytes("user: hi\n[think=False]")) expected.push_back(id);
  CHECK(*ids == expected);
}

TEST_CASE("EncodeChat errors name the field") {
  auto renderer = Renderer(
      "{% for m in messages %}{% if m.role == 'tool' %}{{ raise_exception('no tools here') }}"
      "{% endif %}{{ m.content }}{% endfor %}");
  CHECK(EncodeChat(nullptr, ByteTokenizer(), Input({{{"role", "user"}, {"content", "x"}}})).status().code() ==
        absl::StatusCode::kFailedPrecondition);
  CHECK(EncodeError(renderer.get(), Json::array()).message() == "messages: expected at least one message");
  CHECK(EncodeError(renderer.get(), {1}).message() == "messages[0]: expected an object, got number");
  CHECK(EncodeError(renderer.get(), {{{"content", "x"}}}).message() == "messages[0].role: expected a string");
  CHECK(EncodeError(renderer.get(), {{{"role", "user"}, {"content", 3}}}).message() ==
        "messages[0].content: expected a string or a list of parts, got number");
  CHECK(EncodeError(renderer.get(), {{{"role", "user"}, {"content", {{{"type", "image_url"}}}}}}).message() ==
        "messages[0].content[0].type: only \"text\" parts are supported, got \"image_url\"");
  CHECK(EncodeError(renderer.get(), {{{"role", "user"}, {"content", {{{"type", "text"}}}}}}).message() ==
        "messages[0].content[0].text: expected a string");
  CHECK(EncodeError(renderer.get(), {{{"role", "user"}, {"content", "x"}, {"tool_calls", 5}}}).message() ==
        "messages[0].tool_calls: expected an array, got number");
  absl::Status raised = EncodeError(renderer.get(), {{{"role", "tool"}, {"content", "x"}}});
  CHECK(raised.code() == absl::StatusCode::kInvalidArgument);
  CHECK(raised.message().find("chat template: ") == 0);
  CHECK(raised.message().find("no tools here") != std::string::npos);
  // Empty output is an error, not an empty prompt.
  CHECK(EncodeError(renderer.get(), {{{"role", "user"}, {"content", ""}}}).message() ==
        "messages: the chat template rendered an empty prompt");

  // A conversation past the template's step limit is the request's fault
  // (400), never RESOURCE_EXHAUSTED (which clients retry as a full queue).
  chat::TemplateOptions small;
  small.max_steps = 1000;
  auto looping = Renderer("{% for i in range(100000) %}x{% endfor %}", small);
  absl::Status limit = EncodeError(looping.get(), {{{"role", "user"}, {"content", "x"}}});
  CHECK(limit.code() == absl::StatusCode::kInvalidArgument);
  CHECK(limit.message().find("chat template: ") == 0);
}

TEST_CASE("ChatInputFromProto: the gRPC conversation in OpenAI's shape") {
  kestrel::v1::ChatPrompt chat;
  auto* system = chat.add_messages();
  system->set_role("system");
  system->set_content("Be brief.");
  auto* assistant = chat.add_messages();
  assistant->set_role("assistant");
  auto* call = assistant->add_tool_calls();
  call->set_id("c1");
  call->set_name("weather");
  call->set_arguments(R"({"city": "Oslo"})");
  auto* tool = chat.add_messages();
  tool->set_role("tool");
  tool->set_content("12C");
  tool->set_tool_call_id("c1");
  chat.set_tools_json(R"([{"type": "function", "function": {"name": "weather"}}])");
  chat.set_template_kwargs_json(R"({"enable_thinking": true})");

  absl::StatusOr<ChatInput> input = ChatInputFromProto(chat);
  REQUIRE(input.ok());
  CHECK(input->messages == Json::parse(R"([
    {"role": "system", "content": "Be brief."},
    {"role": "assistant", "content": null,
     "tool_calls": [{"id": "c1", "type": "function",
                     "function": {"name": "weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
    {"role": "tool", "content": "12C", "tool_call_id": "c1"}])"));
  CHECK(input->tools[0]["function"]["name"] == "weather");
  CHECK(input->template_kwargs == Json{{"enable_thinking", true}});
  CHECK(input->add_generation_prompt);  // the default
  chat.set_add_generation_prompt(false);
  CHECK_FALSE(ChatInputFromProto(chat)->add_generation_prompt);

  kestrel::v1::ChatPrompt bad = chat;
  bad.set_tools_json("{oops");
  CHECK(ChatInputFromProto(bad).status().message() == "chat.tools_json: not valid JSON: \"{oops\"");
  bad = chat;
  bad.set_tools_json("{}");
  CHECK(ChatInputFromProto(bad).status().message() == "chat.tools_json: expected a JSON array, got object");
  bad = chat;
  bad.set_template_kwargs_json("[1]");
  CHECK(ChatInputFromProto(bad).status().message() ==
        "chat.template_kwargs_json: expected a JSON object, got array");
  CHECK(ChatInputFromProto(kestrel::v1::ChatPrompt()).status().message() ==
        "chat.messages must hold at least one message, got 0");
}

}  // namespace
}  // namespace kestrel::server
