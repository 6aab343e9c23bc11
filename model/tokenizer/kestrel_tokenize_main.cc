// kestrel-tokenize: tokenizes JSON lines offline with a model directory's
// tokenizer.json, for checking a tokenizer against the reference.
//
//   kestrel-tokenize --tokenizer=DIR < in.jsonl > out.jsonl
//   kestrel-tokenize --tokenizer=DIR --decode [--skip-special-tokens] < ids.jsonl
//
// Exit codes (docs/cli.md): 0 every line processed, 1 the tokenizer cannot
// be loaded, 2 usage, 3 some line produced an {"error": ...} line.
#include <iostream>
#include <string>

#include "common/flags.h"
#include "model/tokenizer/tokenize_tool.h"
#include "model/tokenizer/tokenizer.h"

namespace {

constexpr int kExitBadLines = kestrel::kExitToolSpecific;

constexpr char kDescription[] =
    "Reads {\"text\": ...} lines (or {\"ids\": [...]} with --decode) on stdin and writes one\n"
    "JSON line per input line (docs/tokenizer.md).\n"
    "Exit codes: 0 ok, 1 the tokenizer cannot be loaded, 2 usage, 3 some line produced an\n"
    "{\"error\": ...} line.";

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  kestrel::tokenizer::TokenizeToolOptions options;
  kestrel::FlagSet flags("kestrel-tokenize", "< input.jsonl", kDescription);
  flags.Add("tokenizer", &dir, "DIR", "Directory holding tokenizer.json (required)");
  flags.Add("decode", &options.decode, "Decode {\"ids\": [...]} lines instead of encoding text");
  flags.Add("skip-special-tokens", &options.skip_special_tokens,
            "With --decode: drop special tokens from the text");
  flags.Add("plain-special-tokens", &options.plain_special_tokens,
            "Treat special-token text in the input as plain text");
  const kestrel::ParsedArgs args = flags.ParseOrExit(argc, argv);
  if (!args.positional.empty()) {
    return flags.UsageError("unexpected argument '" + args.positional[0] + "' (see --help)");
  }
  if (dir.empty()) return flags.UsageError("--tokenizer: required (--tokenizer=DIR)");
  auto tokenizer = kestrel::tokenizer::Tokenizer::LoadFromDirectory(dir, {});
  if (!tokenizer.ok()) {
    std::cerr << "kestrel-tokenize: " << tokenizer.status() << "\n";
    return kestrel::kExitRuntimeError;
  }
  std::ios::sync_with_stdio(false);
  const size_t errors = kestrel::tokenizer::RunTokenizeTool(**tokenizer, std::cin, std::cout, options);
  return errors == 0 ? kestrel::kExitOk : kExitBadLines;
}
