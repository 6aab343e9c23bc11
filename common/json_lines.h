// The loop of the JSON-lines tools (kestrel-tokenize, kestrel-chat-template):
// one output line per non-blank input line, the processor's text or
// {"error": MESSAGE}.
#ifndef KESTREL_COMMON_JSON_LINES_H_
#define KESTREL_COMMON_JSON_LINES_H_

#include <cstddef>
#include <functional>
#include <istream>
#include <ostream>
#include <string>

#include "absl/status/statusor.h"

namespace kestrel {

// Reads `in` line by line, skipping blank ones; writes process(line) (one
// line of JSON) or, when it fails, {"error": its message}, and flushes each
// line so an interactive caller sees it at once. Returns the number of
// error lines.
size_t RunJsonLines(std::istream& in, std::ostream& out,
                    const std::function<absl::StatusOr<std::string>(const std::string&)>& process);

}  // namespace kestrel

#endif  // KESTREL_COMMON_JSON_LINES_H_
