// kestrel-chat-template: renders chat requests offline with a model
// directory's chat template and tokenizer, for checking a template against
// transformers' apply_chat_template.
//
//   kestrel-chat-template --model=DIR < requests.jsonl > rendered.jsonl
//
// Exit codes (docs/cli.md): 0 every line rendered, 1 the template or the
// tokenizer cannot be loaded, 2 usage, 3 some line produced an
// {"error": ...} line.
#include <iostream>
#include <string>

#include "common/flags.h"
#include "model/chat/chat_template.h"
#include "model/chat/chat_template_tool.h"
#include "model/tokenizer/tokenizer.h"

namespace {

constexpr int kExitBadLines = kestrel::kExitToolSpecific;

constexpr char kDescription[] =
    "Reads {\"messages\": [...], \"tools\": [...], \"options\": {\"add_generation_prompt\": true,\n"
    "...}} lines on stdin and writes one {\"rendered\": ..., \"ids\": [...]} or {\"error\": ...}\n"
    "line per input line; other options are the template's extra keyword arguments, e.g.\n"
    "enable_thinking (docs/chat-templates.md).\n"
    "Exit codes: 0 ok, 1 the chat template or tokenizer cannot be loaded, 2 usage, 3 some line\n"
    "produced an {\"error\": ...} line.";

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  kestrel::FlagSet flags("kestrel-chat-template", "< requests.jsonl", kDescription);
  flags.Add("model", &dir, "DIR",
            "Model directory with tokenizer.json and a chat template (tokenizer_config.json or "
            "chat_template.jinja) (required)");
  const kestrel::ParsedArgs args = flags.ParseOrExit(argc, argv);
  if (!args.positional.empty()) {
    return flags.UsageError("unexpected argument '" + args.positional[0] + "' (see --help)");
  }
  if (dir.empty()) return flags.UsageError("--model: required (--model=DIR)");
  auto chat = kestrel::chat::ChatTemplate::LoadFromDirectory(dir);
  if (!chat.ok()) {
    std::cerr << "kestrel-chat-template: " << chat.status() << "\n";
    return kestrel::kExitRuntimeError;
  }
  auto tokenizer = kestrel::tokenizer::Tokenizer::LoadFromDirectory(dir, {});
  if (!tokenizer.ok()) {
    std::cerr << "kestrel-chat-template: " << tokenizer.status() << "\n";
    return kestrel::kExitRuntimeError;
  }
  std::ios::sync_with_stdio(false);
  const size_t errors = kestrel::chat::RunChatTemplateTool(*chat, **tokenizer, std::cin, std::cout);
  return errors == 0 ? kestrel::kExitOk : kExitBadLines;
}
