// Command-line parsing for Kestrel's tools (`kestrel`, `kestrel-bench`) over
// flags defined with ABSL_FLAG. Unlike absl::ParseCommandLine it never exits
// the process: bad input comes back as a status so that each tool can print
// its own message and use its documented usage exit code (2).
#ifndef KESTREL_CLIENT_CLI_FLAGS_H_
#define KESTREL_CLIENT_CLI_FLAGS_H_

#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kestrel::client {

struct CommandLine {
  // Arguments that are not flags, in order (argv[0] excluded).
  std::vector<std::string> positional;
  // Canonical names (underscores) of the flags given.
  std::set<std::string> specified;
  // --help or -h was given.
  bool help = false;
};

// Parses argv[1..]: --name=value, --name value (non-boolean flags), --flag
// and --noflag (booleans), dashes or underscores in names alike
// (--max-tokens = --max_tokens); "--" ends the flags. Fails with
// INVALID_ARGUMENT naming the flag for an unknown flag, a missing value or a
// value that does not parse. Not thread-safe (sets global flags).
absl::StatusOr<CommandLine> ParseFlags(int argc, char** argv);

// One line per flag defined in a file whose path contains `path_part`:
// "  --name=<default>  help", sorted by name, dashes in names.
std::string FlagHelp(absl::string_view path_part);

}  // namespace kestrel::client

#endif  // KESTREL_CLIENT_CLI_FLAGS_H_
