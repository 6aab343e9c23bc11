// Flag parsing through Abseil's public flag reflection API.
#include "client/cli_flags.h"

#include <algorithm>
#include <optional>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace kestrel::client {

absl::StatusOr<CommandLine> ParseFlags(int argc, char** argv) {
  CommandLine result;
  bool flags_done = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (flags_done || arg.size() < 2 || arg[0] != '-' || arg == "-") {
      result.positional.push_back(arg);
      continue;
    }
    if (arg == "--") {
      flags_done = true;
      continue;
    }
    if (arg == "-h" || arg == "--help" || arg == "-help") {
      result.help = true;
      continue;
    }
    absl::string_view body = arg;
    body.remove_prefix(body[1] == '-' ? 2 : 1);
    const size_t equals = body.find('=');
    std::string name = absl::StrReplaceAll(body.substr(0, equals), {{"-", "_"}});
    std::optional<std::string> value;
    if (equals != absl::string_view::npos) value = std::string(body.substr(equals + 1));

    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr && !value.has_value() && absl::StartsWith(name, "no")) {
      absl::CommandLineFlag* negated = absl::FindCommandLineFlag(name.substr(2));
      if (negated != nullptr && negated->IsOfType<bool>()) {
        flag = negated;
        name = name.substr(2);
        value = "false";
      }
    }
    if (flag == nullptr || flag->IsRetired()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag '", arg, "'"));
    }
    if (!value.has_value()) {
      if (flag->IsOfType<bool>()) {
        value = "true";
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrCat("flag '", arg, "' needs a value"));
      }
    }
    std::string error;
    if (!flag->ParseFrom(*value, &error)) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad value '", *value, "' for --", name, ": ", error));
    }
    result.specified.insert(name);
  }
  return result;
}

std::string FlagHelp(absl::string_view path_part) {
  std::vector<absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (absl::StrContains(flag->Filename(), path_part)) flags.push_back(flag);
  }
  std::sort(flags.begin(), flags.end(), [](auto* a, auto* b) { return a->Name() < b->Name(); });
  std::string help;
  for (const absl::CommandLineFlag* flag : flags) {
    absl::StrAppend(&help, "  --", absl::StrReplaceAll(flag->Name(), {{"_", "-"}}), "=",
                    flag->DefaultValue(), "\n      ", flag->Help(), "\n");
  }
  return help;
}

}  // namespace kestrel::client
