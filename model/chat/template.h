// A parsed Jinja template (the subset chat templates use) and its renderer,
// matching jinja2's ImmutableSandboxedEnvironment as transformers configures
// it: trim_blocks, lstrip_blocks, loop controls, and Python's printing of
// values. Limits on steps, output and nesting keep a hostile template from
// hanging or exhausting memory. See docs/chat-templates.md.
//
//   ASSIGN_OR_RETURN(Template t, Template::Parse("Hello {{ name }}!"));
//   DictData context;
//   context.Set("name", "world");
//   ASSIGN_OR_RETURN(std::string text, t.Render(context));  // "Hello world!"
#ifndef KESTREL_MODEL_CHAT_TEMPLATE_H_
#define KESTREL_MODEL_CHAT_TEMPLATE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "model/chat/value.h"

namespace kestrel::chat {

struct Node;

struct TemplateOptions {
  // Largest rendered text, and largest string or container a render may
  // build (RESOURCE_EXHAUSTED beyond); the request's own values may be
  // larger.
  size_t max_output_bytes = 32 << 20;
  // Evaluation steps (expressions, statements, loop iterations) per render;
  // a real chat template takes a few thousand. RESOURCE_EXHAUSTED beyond.
  int64_t max_steps = 2'000'000;
  // Nested macro calls (recursion) per render.
  int max_call_depth = 64;
  // What strftime_now() formats, in `time_zone` (transformers uses the
  // local time); tests pin both.
  std::function<absl::Time()> clock = [] { return absl::Now(); };
  absl::TimeZone time_zone = absl::LocalTimeZone();
};

// Immutable after Parse; Render is const and thread-safe.
class Template {
 public:
  // Errors name the line: "chat template line 3: unexpected 'endfor'".
  static absl::StatusOr<Template> Parse(std::string_view source, TemplateOptions options = {});

  // Renders with `variables` as the template's context (on top of the
  // globals range, namespace, dict, raise_exception, strftime_now). Errors
  // (INVALID_ARGUMENT, or RESOURCE_EXHAUSTED for limits) name the line.
  absl::StatusOr<std::string> Render(const DictData& variables) const;

 private:
  Template(std::shared_ptr<const std::vector<std::unique_ptr<Node>>> body, TemplateOptions options)
      : body_(std::move(body)), options_(std::move(options)) {}

  std::shared_ptr<const std::vector<std::unique_ptr<Node>>> body_;
  TemplateOptions options_;
};

}  // namespace kestrel::chat

#endif  // KESTREL_MODEL_CHAT_TEMPLATE_H_
