// The logic of the `kestrel-tokenize` command, kept in a library so the
// golden-file tests drive exactly what users run.
//
//   encode mode: {"text": "..."}  -> {"ids": [...], "ids_with_special": [...],
//                                     "decoded": "..."}
//   decode mode: {"ids": [...]}   -> {"text": "..."}
//
// `ids` has no special tokens added, `ids_with_special` has the
// post-processor's, and `decoded` is the decode of `ids` (special tokens
// kept). A line that cannot be processed yields {"error": "..."}.
#ifndef KESTREL_MODEL_TOKENIZER_TOKENIZE_TOOL_H_
#define KESTREL_MODEL_TOKENIZER_TOKENIZE_TOOL_H_

#include <istream>
#include <ostream>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "model/tokenizer/tokenizer.h"

namespace kestrel::tokenizer {

struct TokenizeToolOptions {
  // Read {"ids": [...]} lines and write {"text": ...} instead of encoding.
  bool decode = false;
  // Decode mode: drop special tokens from the text.
  bool skip_special_tokens = false;
  // Encode mode: treat special-token text in the input as plain text.
  bool plain_special_tokens = false;
};

// Processes one input line; returns the output JSON line (no newline), or
// an error for a malformed line.
absl::StatusOr<std::string> ProcessToolLine(const Tokenizer& tokenizer, std::string_view line,
                                            const TokenizeToolOptions& options);

// Runs the command over `in`, writing one line to `out` per non-empty input
// line. Returns the number of lines that produced {"error": ...}.
size_t RunTokenizeTool(const Tokenizer& tokenizer, std::istream& in, std::ostream& out,
                       const TokenizeToolOptions& options);

}  // namespace kestrel::tokenizer

#endif  // KESTREL_MODEL_TOKENIZER_TOKENIZE_TOOL_H_
