#!/usr/bin/env python3
"""Writes conversations.jsonl, the message lists every chat template is
rendered with in chat_template_conformance_test (kept as a script so the
cases stay readable; run it after editing)."""
import json

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name, e.g. Zürich"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}}
SEARCH_TOOL = {"type": "function", "function": {
    "name": "search", "description": "Search the web; returns \"snippets\".",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"},
                                                    "limit": {"type": "integer", "default": 3}}}}}
TOOLS = [WEATHER_TOOL, SEARCH_TOOL]


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def system(text):
    return {"role": "system", "content": text}


def call(name, arguments, call_id="call12345"):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def tool_result(content, call_id="call12345", name=None):
    message = {"role": "tool", "tool_call_id": call_id, "content": content}
    if name:
        message["name"] = name
    return message


CASES = [
    ("single_user", [user("Hello!")], {}),
    ("single_user_prompt", [user("Hello!")], {"add_generation_prompt": True}),
    ("system_user", [system("You are a pirate."), user("Hi there")], {"add_generation_prompt": True}),
    ("multi_turn", [user("Hi"), assistant("Hello! How can I help?"), user("What is 2+2?"),
                    assistant("4."), user("Thanks")], {"add_generation_prompt": True}),
    ("multi_turn_no_prompt", [system("Be brief."), user("Hi"), assistant("Hello."), user("Bye"),
                              assistant("Goodbye!")], {}),
    ("empty_content", [user(""), assistant(""), user("still there?")], {"add_generation_prompt": True}),
    ("whitespace_content", [user("  padded  \n\n"), assistant("\n answer \t")], {}),
    ("cjk", [system("你是一个乐于助人的助手。"), user("今天天气怎么样？"), assistant("今天晴，气温二十五度。"),
             user("日本語も話せますか？한국어는요?")], {"add_generation_prompt": True}),
    ("emoji", [user("I ❤️ llamas 🦙🦙 and flags 🇨🇭"), assistant("👍🏽 Same!")], {"add_generation_prompt": True}),
    ("combining_marks", [user("Cafe\u0301 vs Café, n\u0303, Zalgo: Z\u0351\u036b\u0343a\u0308"),
                         assistant("e\u0301 is two code points")], {}),
    ("quotes_backslashes", [user("He said \"hi\" and 'bye' \\ C:\\path\\n {{ not a tag }} {% raw %}"),
                            assistant("Use `\\n` for newlines; JSON: {\"a\": \"b\\\"c\"}")],
     {"add_generation_prompt": True}),
    ("control_chars", [user("tab\there\r\nbell\x07 nul-ish \x1b[0m \u2028 line sep \u00a0 nbsp")], {}),
    ("long_text", [user("word " * 200 + "end"), assistant("ok " * 50)], {"add_generation_prompt": True}),
    ("tools_offered", [user("What's the weather in Paris?")], {"tools": TOOLS, "add_generation_prompt": True}),
    ("tools_with_system", [system("Use tools when needed."), user("Weather in Zürich?")],
     {"tools": [WEATHER_TOOL], "add_generation_prompt": True}),
    ("tool_call_dict_args", [user("Weather in Paris?"),
                             {"role": "assistant", "content": "", "tool_calls": [
                                 call("get_weather", {"city": "Paris", "unit": "celsius"})]},
                             tool_result("{\"temperature\": 21, \"sky\": \"clear\"}"),
                             assistant("It is 21°C and clear in Paris.")],
     {"tools": TOOLS, "add_generation_prompt": False}),
    ("tool_call_string_args", [user("Search for llamas"),
                               {"role": "assistant", "content": None, "tool_calls": [
                                   call("search", "{\"query\": \"llamas\", \"limit\": 2}", "abcdefghi")]},
                               tool_result("Llamas are camelids.", "abcdefghi")],
     {"tools": TOOLS, "add_generation_prompt": True}),
    ("tool_call_with_content", [user("Weather in Oslo and Rome?"),
                                {"role": "assistant", "content": "Let me check both.", "tool_calls": [
                                    call("get_weather", {"city": "Oslo"}, "call00001"),
                                    call("get_weather", {"city": "Rome"}, "call00002")]},
                                tool_result("-3", "call00001"), tool_result("18", "call00002")],
     {"tools": TOOLS, "add_generation_prompt": True}),
    ("tool_numbers_nested", [user("Complex call"),
                             {"role": "assistant", "content": "", "tool_calls": [
                                 call("search", {"query": "x", "limit": 10, "ratio": 0.5, "big": 1e20,
                                                 "flag": True, "none": None, "list": [1, "two", 3.0],
                                                 "nested": {"k": "v", "é": "ü"}})]},
                             tool_result("done")],
     {"tools": [SEARCH_TOOL]}),
    ("tool_result_unicode", [user("查一下"), {"role": "assistant", "content": "", "tool_calls": [
        call("search", {"query": "北京 天气 ☀️"})]}, tool_result("晴 ☀️ 25°C", name="search")],
     {"tools": TOOLS, "add_generation_prompt": True}),
    ("content_parts", [{"role": "user", "content": [{"type": "text", "text": "Describe this:"},
                                                     {"type": "image", "url": "http://x/y.png"},
                                                     {"type": "text", "text": "Be brief."}]},
                       assistant("A cat.")], {"add_generation_prompt": True}),
    ("content_parts_only_image", [{"role": "user", "content": [{"type": "image"}]}], {}),
    ("system_parts", [{"role": "system", "content": [{"type": "text", "text": "Sys in parts"}]},
                      user("Hi")], {"add_generation_prompt": True}),
    ("thinking_reasoning_content", [user("What is 3*7?"),
                                    {"role": "assistant", "content": "21",
                                     "reasoning_content": "3 times 7 is 21."},
                                    user("And 4*5?")],
     {"add_generation_prompt": True, "extra": {"enable_thinking": True}}),
    ("thinking_inline_think", [user("Why is the sky blue?"),
                               assistant("<think>\nRayleigh scattering.\n</think>\n\nBecause of Rayleigh scattering.")],
     {"extra": {"enable_thinking": True}}),
    ("thinking_disabled", [user("Quick answer please")],
     {"add_generation_prompt": True, "extra": {"enable_thinking": False}}),
    ("extra_kwargs", [system("sys"), user("Hi")],
     {"add_generation_prompt": True, "extra": {"mode": "fast", "date_string": "01 Jan 2025",
                                               "tools_in_user_message": False}}),
    ("extra_overrides_token", [user("Hi")], {"extra": {"bos_token": "<BOS>"}}),
    ("consecutive_users", [user("First"), user("Second")], {"add_generation_prompt": True}),
    ("assistant_first", [assistant("I start."), user("ok")], {}),
    ("system_only", [system("Only a system message")], {"add_generation_prompt": True}),
    ("no_messages", [], {"add_generation_prompt": True}),
    ("two_systems", [system("A"), user("u"), system("B"), user("v")], {"add_generation_prompt": True}),
    ("unknown_role", [user("hi"), {"role": "critic", "content": "meh"}], {}),
    ("missing_content", [{"role": "user"}, assistant("answer")], {}),
    ("ipython_role", [user("Run it"), {"role": "ipython", "content": {"stdout": "42\n", "ok": True}}],
     {"add_generation_prompt": True}),
    ("documents", [user("Summarize the documents")],
     {"documents": [{"title": "A", "text": "Alpha"}, {"title": "B", "text": "Beta"}],
      "add_generation_prompt": True}),
    ("markup_like", [user("<b>bold</b> & <script>alert('x')</script>"),
                     assistant("&lt;escaped&gt; stays")], {}),
]


def main():
    with open("conversations.jsonl", "w", encoding="utf-8") as out:
        for name, messages, options in CASES:
            case = {"name": name, "messages": messages, "tools": options.get("tools"),
                    "documents": options.get("documents"),
                    "add_generation_prompt": options.get("add_generation_prompt", False),
                    "extra": options.get("extra", {})}
            out.write(json.dumps(case, ensure_ascii=False) + "\n")
    print(f"{len(CASES)} conversations")


if __name__ == "__main__":
    main()
