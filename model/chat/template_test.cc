// The interpreter's trickier semantics, each checked against what jinja2
// (3.1, as transformers configures it) prints, and its error paths:
// malformed templates name the line, hostile ones hit a limit.
#include "model/chat/template.h"

#include <catch2/catch.hpp>
#include <thread>

#include "absl/time/civil_time.h"

namespace kestrel::chat {
namespace {

using Json = nlohmann::ordered_json;

absl::StatusOr<std::string> Render(std::string_view source, const Json& variables = Json::object(),
                                   TemplateOptions options = {}) {
  auto parsed = Template::Parse(source, std::move(options));
  if (!parsed.ok()) return parsed.status();
  DictData context;
  for (const auto& [key, value] : variables.items()) context.Set(key, Value::FromJson(value));
  return parsed->Render(context);
}

std::string RenderOk(std::string_view source, const Json& variables = Json::object()) {
  auto rendered = Render(source, variables);
  INFO(source);
  REQUIRE(rendered.ok());
  return *rendered;
}

std::string ErrorOf(std::string_view source, const Json& variables = Json::object(),
                    TemplateOptions options = {}) {
  auto rendered = Render(source, variables, std::move(options));
  INFO(source);
  REQUIRE_FALSE(rendered.ok());
  return std::string(rendered.status().message());
}

TEST_CASE("whitespace control: trim_blocks, lstrip_blocks, '-' and '+'") {
  CHECK(RenderOk("a\n  {% if true %}\n  x\n  {% endif %}\n") == "a\n  x\n");
  CHECK(RenderOk("{{ 'a' }}  {% if true %}y{% endif %}") == "a  y");  // not at line start
  CHECK(RenderOk("a  {%- if true -%}  b  {%- endif %}") == "ab");
  CHECK(RenderOk("x\n  {%+ if true %}y{% endif %}") == "x\n  y");
  CHECK(RenderOk("{% if true +%}\ny{% endif %}") == "\ny");
  CHECK(RenderOk("\t{# comment #}\nz") == "z");
  CHECK(RenderOk("{{ 1 }}\n{{ 2 }}\n") == "1\n2");  // one trailing newline dropped
  CHECK(RenderOk("a\r\nb\rc") == "a\nb\nc");
  CHECK(RenderOk("{{- ' x ' -}}\n\n") == " x ");
}

TEST_CASE("for loops: loop variables, filters, else, break and continue") {
  CHECK(RenderOk("{% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}"
                 "{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}") ==
        "1032TrueFalse3;2121FalseFalse3;3210FalseTrue3;");
  CHECK(RenderOk("{% for x in [1, 2, 3] %}{{ loop.previtem }}|{{ loop.nextitem }}|"
                 "{{ loop.cycle('a', 'b') }} {% endfor %}") == "|2|a 1|3|b 2||a ");
  CHECK(RenderOk("{% for x in range(6) if x is odd %}{{ x }}/{{ loop.length }} {% endfor %}") ==
        "1/3 3/3 5/3 ");
  CHECK(RenderOk("{% for x in [] %}no{% else %}empty{% endfor %}") == "empty");
  CHECK(RenderOk("{% for x in range(9) %}{% if x == 2 %}{% continue %}{% endif %}"
                 "{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}") == "013");
  CHECK(RenderOk("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }} {% endfor %}") == "a=1 b=2 ");
  // A set inside the body starts afresh each iteration and does not leak.
  CHECK(RenderOk("{% set x = 0 %}{% for i in [1, 2] %}{{ x }}{% set x = i %}{{ x }}|{% endfor %}{{ x }}") ==
        "01|02|0");
}

TEST_CASE("namespace, set blocks, macros and call blocks") {
  CHECK(RenderOk("{% set ns = namespace(n=0) %}{% for i in range(4) %}{% set ns.n = ns.n + i %}"
                 "{% endfor %}{{ ns.n }} {{ ns }}") == "6 <Namespace {'n': 6}>");
  CHECK(RenderOk("{% set x %}  in {{ 1 + 1 }}  {% endset %}[{{ x }}]{% set y | trim %} t {% endset %}[{{ y }}]") ==
        "[  in 2  ][t]");
  CHECK(RenderOk("{% macro m(a, b='B') %}{{ a }}{{ b }}{% if caller %}<{{ caller() }}>{% endif %}"
                 "{% endmacro %}{{ m(1) }} {{ m(1, b=2) }} {% call m('c') %}body{% endcall %}") ==
        "1B 12 cB<body>");
  CHECK(RenderOk("{% macro f() %}{{ y }}{% endmacro %}{% set y = 5 %}{{ f() }}") == "5");
  CHECK(RenderOk("{% filter upper %}a{{ 'b' }}{% endfilter %}") == "AB");
  CHECK(RenderOk("{% generation %}kept{% endgeneration %}") == "kept");
  CHECK(ErrorOf("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}").find("takes not more than 1") !=
        std::string::npos);
  CHECK(ErrorOf("{% set s = 'x' %}{% set s.a = 1 %}").find("non-namespace") != std::string::npos);
}

TEST_CASE("undefined behaves like jinja2's default Undefined") {
  CHECK(RenderOk("[{{ missing }}]{{ missing is defined }}{{ missing | default('d') }}"
                 "{{ missing | length }}{{ missing == none }}{{ missing | list }}") == "[]Falsed0False[]");
  CHECK(RenderOk("{% for x in missing %}x{% endfor %}{{ d.nokey }}|{{ d.nokey is defined }}",
                 {{"d", Json::object()}}) == "|False");
  CHECK(ErrorOf("{{ missing.attr }}") == "chat template line 1: 'missing' is undefined");
  CHECK(ErrorOf("\n{{ missing + 1 }}") == "chat template line 2: 'missing' is undefined");
  CHECK(ErrorOf("{{ d.a.b }}", {{"d", Json::object()}}).find("no attribute 'a'") != std::string::npos);
  CHECK(RenderOk("{{ 1 if false }}|{{ ''|default('e', true) }}") == "|e");
}

TEST_CASE("values print the way Python prints them") {
  CHECK(RenderOk("{{ 1.0 }} {{ 10 / 4 }} {{ 1e20 }} {{ 1.5e-7 }} {{ 0.1 + 0.2 }} {{ 2 ** 3 ** 2 }}") ==
        "1.0 2.5 1e+20 1.5e-07 0.30000000000000004 64");
  CHECK(RenderOk("{{ true }} {{ none }} {{ [1, 'a', none, 2.0] }} {{ (1,) }} {{ {'k': 'it\\'s'} }}") ==
        "True None [1, 'a', None, 2.0] (1,) {'k': \"it's\"}");
  CHECK(RenderOk("{{ ['a\\nb', '\\\\', 'é', '\\x07'] }}") == "['a\\nb', '\\\\', 'é', '\\x07']");
  CHECK(RenderOk("{{ -7 // 2 }} {{ -7 % 3 }} {{ 7.5 % -2 }} {{ True + 1 }} {{ 1 == 1.0 }}") ==
        "-4 2 -0.5 2 True");
  CHECK(RenderOk("{{ m }}", {{"m", {{"b", 1}, {"a", Json::array({true, nullptr})}}}}) ==
        "{'b': 1, 'a': [True, None]}");
}

TEST_CASE("filters, tests and methods") {
  CHECK(RenderOk("{{ x | tojson }}|{{ x | tojson(indent=2) }}",
                 {{"x", {{"é", Json::array({1, 2.5})}}}}) ==
        "{\"é\": [1, 2.5]}|{\n  \"é\": [\n    1,\n    2.5\n  ]\n}");
  CHECK(RenderOk("{{ 'a\"\\\\\\n' | tojson }}") == "\"a\\\"\\\\\\n\"");
  CHECK(RenderOk("{{ ms | selectattr('r', 'eq', 'u') | map(attribute='c') | join(',') }}",
                 {{"ms", Json::parse(R"([{"r":"u","c":"1"},{"r":"a","c":"2"},{"r":"u","c":"3"}])")}}) ==
        "1,3");
  CHECK(RenderOk("{{ [3, 1, 2] | sort }}{{ ['b', 'A'] | sort }}{{ {'b': 1, 'a': 2} | dictsort }}") ==
        "[1, 2, 3]['A', 'b'][('a', 2), ('b', 1)]");
  CHECK(RenderOk("{{ '  x  ' | trim }}|{{ 'xxhixx'.strip('x') }}|{{ 'a,b,,c'.split(',') }}|"
                 "{{ ' a  b '.split() }}|{{ 'Hello' | upper }}{{ 'ÉCOLE' | lower }}") ==
        "x|hi|['a', 'b', '', 'c']|['a', 'b']|HELLOécole");
  CHECK(RenderOk("{{ '你好世界'[1:3] }}{{ '你好' | length }}{{ [1, 2, 3][::-1] }}{{ 'abc'[-1] }}") ==
        "好世2[3, 2, 1]c");
  CHECK(RenderOk("{{ 3 is divisibleby 3 }}{{ 1 is number }}{{ true is integer }}{{ {} is mapping }}"
                 "{{ 'x' is iterable }}{{ x is callable }}{{ range is callable }}") ==
        "TrueTrueFalseTrueTrueFalseTrue");
  CHECK(RenderOk("{{ 'a\\nb' | indent(2, first=true) }}|{{ 'x' | center(5) }}|{{ 2.5 | round }}"
                 "{{ 3 | round }}{{ '42' | int + 1 }}{{ 'x' | int }}") == "  a\n  b|  x  |2.03430");
  CHECK(RenderOk("{{ [1, 2] | first }}{{ [1, 2] | last }}{{ [1, 1, 2] | unique | list }}"
                 "{{ [1, 2, 3] | sum }}{{ [1, 5, 2] | max }}{{ 'one two' | wordcount }}") ==
        "12[1, 2]652");
  CHECK(RenderOk("{{ '%s has %d' % ('x', 3) }}") == "x has 3");
  // Generators (select, map, ...) have no length in jinja2.
  CHECK(ErrorOf("{{ [1] | select | length }}").find("has no len()") != std::string::npos);
}

TEST_CASE("the immutable sandbox refuses mutating methods") {
  CHECK(RenderOk("[{{ [1].append }}]") == "[]");
  CHECK(ErrorOf("{% set l = [1] %}{{ l.append(2) }}") ==
        "chat template line 1: access to attribute 'append' of 'list' object is unsafe.");
  CHECK(ErrorOf("{{ {'a': 1}.update({}) }}").find("unsafe") != std::string::npos);
}

TEST_CASE("globals: raise_exception, strftime_now, range, dict") {
  CHECK(ErrorOf("line 1\n{{ raise_exception('roles must alternate') }}") ==
        "chat template line 2: raise_exception: roles must alternate");
  TemplateOptions options;
  options.clock = [] { return absl::FromCivil(absl::CivilSecond(2024, 2, 9, 8, 5, 0), absl::UTCTimeZone()); };
  options.time_zone = absl::UTCTimeZone();
  auto dated = Render("{{ strftime_now('%d %b %Y %H:%M') }}", Json::object(), options);
  REQUIRE(dated.ok());
  CHECK(*dated == "09 Feb 2024 08:05");
  CHECK(RenderOk("{{ range(3) | list }}{{ range(10, 0, -4) | list }}{{ dict(a=1) }}") ==
        "[0, 1, 2][10, 6, 2]{'a': 1}");
}

TEST_CASE("malformed templates fail at parse time, naming the line") {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"a\nb\n{% endfor %}", "chat template line 3: unexpected 'endfor'"},
      {"{% for x in y %}\n{{ x }}", "chat template line 1: 'for' is never closed (expected 'endfor')"},
      {"{% if x %}{% endfor %}", "chat template line 1: unexpected 'endfor'"},
      {"{{ 'abc }}", "chat template line 1: unterminated string"},
      {"\n\n{{ x ", "chat template line 3: unclosed tag: missing '}}'"},
      {"{% if %}", "chat template line 1: expected an expression, got '%}'"},
      {"{{ x y }}", "chat template line 1: expected '}}', got 'y'"},
      {"{% include 'x' %}", "chat template line 1: unsupported tag 'include'"},
      {"{% break %}", "chat template line 1: 'break' outside a for loop"},
      {"{# open", "chat template line 1: unterminated comment '{#'"},
      {"{{ a[] }}", "chat template line 1: empty subscript '[]'"},
      {"{{ 1 $ 2 }}", "chat template line 1: unexpected character '$'"},
  };
  for (const auto& [source, message] : cases) {
    INFO(source);
    auto parsed = Template::Parse(source);
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK(parsed.status().message() == message);
  }
  CHECK(ErrorOf("{{ x | nosuchfilter }}") == "chat template line 1: no filter named 'nosuchfilter'");
}

TEST_CASE("hostile templates hit a limit instead of hanging or exhausting memory") {
  auto code = [](std::string_view source, TemplateOptions options = {}) {
    auto rendered = Render(source, Json::object(), std::move(options));
    return rendered.status().code();
  };
  const auto kExhausted = absl::StatusCode::kResourceExhausted;
  CHECK(code("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}") ==
        kExhausted);
  CHECK(code("{{ range(10 ** 9) | length }}") == kExhausted);
  CHECK(code("{{ 'x' * 10 ** 9 }}") == kExhausted);
  CHECK(code("{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
             "{% endfor %}") == kExhausted);
  CHECK(code("{% set ns = namespace(l=[1]) %}{% for i in range(80) %}{% set ns.l = [ns.l, ns.l] %}"
             "{% endfor %}{{ ns.l == ns.l }}") == kExhausted);
  CHECK(code("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}") == kExhausted);
  CHECK(code("{% for i in range(100000) %}{{ 'y' * 1000 }}{% endfor %}") == kExhausted);
  TemplateOptions small;
  small.max_output_bytes = 100;
  CHECK(code("{% for i in range(200) %}x{% endfor %}", small) == kExhausted);
  // Nesting deeper than the parser allows is a parse error, not a stack overflow.
  CHECK(Template::Parse("{{ " + std::string(5000, '(') + " }}").status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(Template::Parse("{{ " + std::string(5000, '[') + " }}").status().code() ==
        absl::StatusCode::kInvalidArgument);
  std::string nested_ifs;
  for (int i = 0; i < 500; ++i) nested_ifs += "{% if true %}";
  CHECK(Template::Parse(nested_ifs).status().message().find("nested too deeply") != std::string::npos);
  // A namespace that holds itself prints bounded.
  CHECK(Render("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}").ok());
}

TEST_CASE("one template renders from many threads at once") {
  auto parsed = Template::Parse("{% for m in messages %}{{ m.content | upper }}{% endfor %}");
  REQUIRE(parsed.ok());
  DictData context;
  context.Set("messages", Value::FromJson(Json::parse(R"([{"content": "a"}, {"content": "b"}])")));
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) good += parsed->Render(context).value_or("") == "AB";
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(good == 800);
}

}  // namespace
}  // namespace kestrel::chat
