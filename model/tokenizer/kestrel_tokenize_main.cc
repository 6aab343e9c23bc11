// kestrel-tokenize: tokenizes JSON lines offline with a model directory's
// tokenizer.json, for checking a tokenizer against the reference.
//
//   kestrel-tokenize --tokenizer DIR < in.jsonl > out.jsonl
//   kestrel-tokenize --tokenizer DIR --decode [--skip_special_tokens] < ids.jsonl
//
// Exit status: 0 when every line was processed, 1 when some line produced an
// {"error": ...} line, 2 when the tokenizer cannot be loaded or the flags are
// wrong.
#include <iostream>
#include <string>
#include <string_view>

#include "model/tokenizer/tokenize_tool.h"
#include "model/tokenizer/tokenizer.h"

namespace {

constexpr char kUsage[] =
    "usage: kestrel-tokenize --tokenizer DIR [--decode] [--skip_special_tokens] "
    "[--plain_special_tokens]\n"
    "  reads {\"text\": ...} lines (or {\"ids\": [...]} with --decode) on stdin\n";

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  kestrel::tokenizer::TokenizeToolOptions options;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--tokenizer" && i + 1 < argc) {
      dir = argv[++i];
    } else if (arg.rfind("--tokenizer=", 0) == 0) {
      dir = std::string(arg.substr(12));
    } else if (arg == "--decode") {
      options.decode = true;
    } else if (arg == "--skip_special_tokens") {
      options.skip_special_tokens = true;
    } else if (arg == "--plain_special_tokens") {
      options.plain_special_tokens = true;
    } else {
      std::cerr << "unknown argument: " << arg << "\n" << kUsage;
      return 2;
    }
  }
  if (dir.empty()) {
    std::cerr << kUsage;
    return 2;
  }
  auto tokenizer = kestrel::tokenizer::Tokenizer::LoadFromDirectory(dir, {});
  if (!tokenizer.ok()) {
    std::cerr << "kestrel-tokenize: " << tokenizer.status() << "\n";
    return 2;
  }
  std::ios::sync_with_stdio(false);
  const size_t errors = kestrel::tokenizer::RunTokenizeTool(**tokenizer, std::cin, std::cout, options);
  return errors == 0 ? 0 : 1;
}
