#include "model/chat/chat_template_fuzz.h"

#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "model/chat/chat_template.h"

namespace kestrel::chat {
namespace {

using Json = nlohmann::ordered_json;

constexpr char kDefaultRequest[] = R"({
  "messages": [
    {"role": "system", "content": "You are helpful. \"Quotes\" and \\ backslashes."},
    {"role": "user", "content": "Weather in Zürich? 你好 🦙"},
    {"role": "assistant", "content": "", "tool_calls": [{"id": "call12345", "type": "function",
      "function": {"name": "get_weather", "arguments": {"city": "Zürich", "days": 3, "ratio": 0.5}}}]},
    {"role": "tool", "tool_call_id": "call12345", "content": "{\"temp\": -3}"},
    {"role": "assistant", "content": "<think>\ncold\n</think>\n\nIt is -3 degrees.",
     "reasoning_content": "cold"},
    {"role": "user", "content": [{"type": "text", "text": "thanks"}, {"type": "image"}]}],
  "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
  "add_generation_prompt": true,
  "enable_thinking": false
})";

[[noreturn]] void Fail(const char* what, std::string_view detail) {
  std::fprintf(stderr, "chat template fuzz invariant violated: %s: %.*s\n", what,
               static_cast<int>(detail.size()), detail.data());
  std::abort();
}

// Small limits: a mutant that loops or grows stops quickly, so the driver
// spends its time on variety.
TemplateOptions FuzzOptions() {
  TemplateOptions options;
  options.max_output_bytes = 1 << 20;
  options.max_steps = 200'000;
  options.clock = [] { return absl::FromUnixSeconds(1'700'000'000); };
  options.time_zone = absl::UTCTimeZone();
  return options;
}

ChatRequest ToRequest(const Json& json) {
  ChatRequest request;
  if (!json.is_object()) {
    request.messages = json;  // not an array: Render must reject it
    return request;
  }
  for (const auto& [key, value] : json.items()) {
    if (key == "messages") {
      request.messages = value;
    } else if (key == "tools") {
      request.tools = value;
    } else if (key == "add_generation_prompt") {
      request.add_generation_prompt = value.is_boolean() && value.get<bool>();
    } else {
      request.extra[key] = value;
    }
  }
  return request;
}

}  // namespace

std::vector<std::string> FuzzSeeds() {
  return {
      "{% for m in messages %}<|{{ m.role }}|>{{ m.content | trim }}{% endfor %}"
      "{% if add_generation_prompt %}<|assistant|>{% endif %}",
      "{%- set ns = namespace(n=0) -%}{%- for m in messages if m.role != 'tool' -%}"
      "{%- set ns.n = ns.n + 1 -%}{{ loop.index }}/{{ loop.length }}:{{ m.content is string }}\n"
      "{%- else -%}none{%- endfor -%}{{ ns.n }}",
      "{% macro show(x, sep=', ') %}{{ x | tojson(indent=2) }}{{ sep }}{{ caller() if caller }}"
      "{% endmacro %}{% for t in tools %}{% call show(t) %}c{% endcall %}{% endfor %}",
      "{{ messages | selectattr('role', 'equalto', 'user') | map(attribute='content') | list }}"
      "{{ messages[::-1][0].role }}{{ (messages | first).content[:5] }}{{ bos_token ~ 'x' }}",
      "{% if messages[0].role == 'system' %}{{ raise_exception('no system') }}{% endif %}",
      "{{ strftime_now('%d %b %Y') }}{{ range(3) | list }}{{ dict(a=1) | dictsort }}"
      "{{ 'a,b'.split(',') }}{{ -7 // 2 }}{{ 2 ** 10 }}{{ 1.5 | round }}{{ none }}",
      "{% filter upper %}{% set x %}block{% endset %}{{ x }}{% endfilter %}"
      "{% generation %}{{ enable_thinking is false }}{% endgeneration %}",
      std::string("{{ messages | length }}") + '\0' + R"({"messages": [{"role": "user", "content": "hi"}]})",
      std::string("{{ messages }}") + '\0' + R"({"messages": "not a list"})",
  };
}

}  // namespace kestrel::chat

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using kestrel::chat::ChatTemplate;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t split = input.find('\0');
  const std::string source(input.substr(0, split));
  nlohmann::ordered_json request_json = nlohmann::ordered_json::parse(split == std::string_view::npos ? std::string_view(kestrel::chat::kDefaultRequest)
                                                                   : input.substr(split + 1),
                                  nullptr, /*allow_exceptions=*/false);
  if (request_json.is_discarded()) return 0;
  kestrel::chat::SpecialTokens special;
  special.tokens = {{"bos_token", "<s>"}, {"eos_token", "</s>"}};
  auto chat = ChatTemplate::Create(source, special, kestrel::chat::FuzzOptions());
  if (!chat.ok()) {
    const std::string message(chat.status().message());
    if (message.find("line ") == std::string::npos) {
      kestrel::chat::Fail("parse error without a line number", message);
    }
    return 0;
  }
  const kestrel::chat::ChatRequest request = kestrel::chat::ToRequest(request_json);
  const auto first = chat->Render(request);
  const auto second = chat->Render(request);
  if (first.ok() != second.ok() || (first.ok() && *first != *second)) {
    kestrel::chat::Fail("two renders of the same request differ", source);
  }
  return 0;
}
