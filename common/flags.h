// The command-line parser every Kestrel binary uses, so that all of them
// spell, document and reject flags the same way (docs/cli.md).
//
//   int32_t threads = 0;                      // the initial value is the default
//   kestrel::FlagSet flags("kestrel-server", "", "Kestrel LLM inference server.");
//   flags.Section("Model");
//   flags.Add("threads", &threads, "N", "CPU compute threads; 0 = one per CPU");
//   kestrel::ParsedArgs args = flags.ParseOrExit(argc, argv);
//   if (threads < 0) return flags.UsageError("--threads must be >= 0, got -1");
//
// Rules: --name=value or --name value; a bool is --name, --name=true|false
// or --no-name; '-' and '_' are the same in names; "--" ends the flags;
// other arguments are positional and returned in order. --help and -h print
// the help to stdout (exit 0); an unknown flag or a bad value is one line on
// stderr naming the flag (exit 2).
#ifndef KESTREL_COMMON_FLAGS_H_
#define KESTREL_COMMON_FLAGS_H_

#include <cstdint>
#include <deque>
#include <initializer_list>
#include <set>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/time/time.h"

namespace kestrel {

// The exit-code convention of every Kestrel binary (docs/cli.md). A tool's
// own codes start at kExitToolSpecific and are documented in its --help.
inline constexpr int kExitOk = 0;
inline constexpr int kExitRuntimeError = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitToolSpecific = 3;

// What Parse found.
struct ParsedArgs {
  // True when the program should stop now: print `message` (to stdout when
  // exit_code is kExitOk, i.e. --help; else to stderr) and exit with
  // `exit_code`.
  bool exit = false;
  int exit_code = kExitOk;
  // --help: the help text (ends in a newline). An error: one line, no
  // newline, starting with the program name.
  std::string message;
  // Arguments that are not flags, in order (argv[0] excluded).
  std::vector<std::string> positional;
  // Canonical (dashed) names of the flags given on the command line, so a
  // program can tell "left at the default" from "set to the default value".
  std::set<std::string> given;

  bool Given(std::string_view name) const;
};

// A program's flags: names, destinations, defaults and help. Build one in
// main() before any thread starts; not thread-safe. Destinations are not
// owned and must outlive the FlagSet's Parse calls.
class FlagSet {
 public:
  // One declared flag. Returned by Add so that options can be chained:
  //   flags.Add("scheduling-policy", &policy, "POLICY", "...").Choices({"fcfs", "priority"});
  class Flag {
   public:
    // A string flag that accepts only these values (listed in the help).
    Flag& Choices(std::initializer_list<std::string_view> choices);
    // Shown as "(default: TEXT)" instead of the destination's initial value,
    // for defaults decided at run time (e.g. "random", "$KESTREL_API_KEY").
    Flag& DefaultText(std::string_view text);

   private:
    friend class FlagSet;
    using Destination = std::variant<std::string*, bool*, int32_t*, int64_t*, uint64_t*, double*,
                                     float*, absl::Duration*, std::vector<std::string>*>;
    std::string name;         // canonical: lower case, dashes
    std::string placeholder;  // "MIB"; empty for bools
    std::string help;
    std::string default_text;  // empty: no default shown
    std::vector<std::string> choices;
    Destination destination;
    size_t section = 0;
  };

  // `program` names the binary in messages ("kestrel-server"); `arguments`
  // follows "[flags]" in the usage line ("<command> [arguments]"; empty for
  // none); `description` (may be several lines) follows the usage line.
  FlagSet(std::string program, std::string arguments, std::string description);
  FlagSet(const FlagSet&) = delete;
  FlagSet& operator=(const FlagSet&) = delete;

  // Starts a titled group of flags in --help; later Adds belong to it.
  void Section(std::string title);

  // Declares --NAME (canonical form: dashes, e.g. "kv-cache-mib"). The
  // destination's current value is the default. `placeholder` names the
  // value in --help ("MIB"); bools take none. A duplicate or malformed name
  // is a programming error and aborts.
  // A string list takes one value per occurrence: the first occurrence
  // replaces the default, later ones append.
  Flag& Add(std::string_view name, std::string* destination, std::string_view placeholder,
            std::string_view help);
  Flag& Add(std::string_view name, std::vector<std::string>* destination,
            std::string_view placeholder, std::string_view help);
  Flag& Add(std::string_view name, int32_t* destination, std::string_view placeholder,
            std::string_view help);
  Flag& Add(std::string_view name, int64_t* destination, std::string_view placeholder,
            std::string_view help);
  Flag& Add(std::string_view name, uint64_t* destination, std::string_view placeholder,
            std::string_view help);
  Flag& Add(std::string_view name, double* destination, std::string_view placeholder,
            std::string_view help);
  Flag& Add(std::string_view name, float* destination, std::string_view placeholder,
            std::string_view help);
  Flag& Add(std::string_view name, absl::Duration* destination, std::string_view placeholder,
            std::string_view help);
  Flag& Add(std::string_view name, bool* destination, std::string_view help);

  // Parses argv[1..argc-1] into the destinations. Never prints or exits:
  // --help and errors come back in the result (see ParsedArgs::exit).
  ParsedArgs Parse(int argc, const char* const* argv);
  ParsedArgs Parse(const std::vector<std::string>& args);  // args excludes argv[0]

  // Parse, then for --help print the help and exit 0, for an error print
  // the line to stderr and exit 2. Otherwise returns the result.
  ParsedArgs ParseOrExit(int argc, char** argv);

  // The --help text: usage line, description, then one aligned line per
  // flag ("  --kv-cache-mib=MIB   Memory for the paged KV cache (default: 256)").
  std::string Help() const;

  // For checks a program makes after parsing: prints "PROGRAM: MESSAGE" to
  // stderr and returns kExitUsage, so that `return flags.UsageError(...)`
  // ends main with the usage exit code.
  int UsageError(std::string_view message) const;

  const std::string& program() const { return program_; }

 private:
  Flag& AddFlag(std::string_view name, Flag::Destination destination, std::string_view placeholder,
                std::string_view help, std::string default_text);
  const Flag* Find(std::string_view canonical_name) const;
  // Sets `flag` from `value`; on failure returns the error text after
  // "--name: " (e.g. `expected an integer, got "x"`), else empty.
  std::string SetValue(const Flag& flag, const std::string& value, std::set<std::string>& given);

  std::string program_;
  std::string arguments_;
  std::string description_;
  std::vector<std::string> sections_;  // [0] is the untitled first group
  std::deque<Flag> flags_;             // deque: Add hands out stable references
};

}  // namespace kestrel

#endif  // KESTREL_COMMON_FLAGS_H_
