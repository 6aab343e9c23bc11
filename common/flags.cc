// FlagSet: declaration, parsing and --help of the project's command lines.
#include "common/flags.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <optional>
#include <type_traits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace kestrel {
namespace {

constexpr size_t kMaxNameColumn = 34;  // longer names put their help on the next line

// Lower case letters, digits and dashes, starting with a letter.
bool IsCanonicalName(std::string_view name) {
  if (name.empty() || !(name[0] >= 'a' && name[0] <= 'z')) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

std::string Canonical(std::string_view name) {
  std::string canonical(name);
  std::replace(canonical.begin(), canonical.end(), '_', '-');
  return canonical;
}

std::string FormatNumber(double value) {
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  return absl::StrFormat("%g", value);
}

std::string Quoted(const std::string& value) { return absl::StrCat("\"", value, "\""); }

template <typename T>
bool ParseInteger(const std::string& text, T* out) {
  return absl::SimpleAtoi(text, out);
}

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

}  // namespace

bool ParsedArgs::Given(std::string_view name) const { return given.count(Canonical(name)) > 0; }

FlagSet::Flag& FlagSet::Flag::Choices(std::initializer_list<std::string_view> list) {
  if (!std::holds_alternative<std::string*>(destination)) {
    std::fprintf(stderr, "FlagSet: --%s: Choices() needs a string flag\n", name.c_str());
    std::abort();
  }
  choices.assign(list.begin(), list.end());
  placeholder = absl::StrJoin(choices, "|");
  return *this;
}

FlagSet::Flag& FlagSet::Flag::DefaultText(std::string_view text) {
  default_text = std::string(text);
  return *this;
}

FlagSet::FlagSet(std::string program, std::string arguments, std::string description)
    : program_(std::move(program)),
      arguments_(std::move(arguments)),
      description_(std::move(description)),
      sections_{""} {}

void FlagSet::Section(std::string title) { sections_.push_back(std::move(title)); }

FlagSet::Flag& FlagSet::AddFlag(std::string_view name, Flag::Destination destination,
                                std::string_view placeholder, std::string_view help,
                                std::string default_text) {
  // Both are programming errors in the binary, found by its first run.
  if (!IsCanonicalName(name) || name == "help" || Find(name) != nullptr) {
    std::fprintf(stderr, "FlagSet: flag name '%s' is malformed or declared twice\n",
                 std::string(name).c_str());
    std::abort();
  }
  Flag& flag = flags_.emplace_back();
  flag.name = std::string(name);
  flag.placeholder = std::string(placeholder);
  flag.help = std::string(help);
  flag.default_text = std::move(default_text);
  flag.destination = destination;
  flag.section = sections_.size() - 1;
  return flag;
}

FlagSet::Flag& FlagSet::Add(std::string_view name, std::string* destination,
                            std::string_view placeholder, std::string_view help) {
  return AddFlag(name, destination, placeholder, help,
                 destination->empty() ? "" : Quoted(*destination));
}
FlagSet::Flag& FlagSet::Add(std::string_view name, std::vector<std::string>* destination,
                            std::string_view placeholder, std::string_view help) {
  return AddFlag(name, destination, placeholder, help, absl::StrJoin(*destination, ","));
}
FlagSet::Flag& FlagSet::Add(std::string_view name, int32_t* destination,
                            std::string_view placeholder, std::string_view help) {
  return AddFlag(name, destination, placeholder, help, absl::StrCat(*destination));
}
FlagSet::Flag& FlagSet::Add(std::string_view name, int64_t* destination,
                            std::string_view placeholder, std::string_view help) {
  return AddFlag(name, destination, placeholder, help, absl::StrCat(*destination));
}
FlagSet::Flag& FlagSet::Add(std::string_view name, uint64_t* destination,
                            std::string_view placeholder, std::string_view help) {
  return AddFlag(name, destination, placeholder, help, absl::StrCat(*destination));
}
FlagSet::Flag& FlagSet::Add(std::string_view name, double* destination,
                            std::string_view placeholder, std::string_view help) {
  return AddFlag(name, destination, placeholder, help, FormatNumber(*destination));
}
FlagSet::Flag& FlagSet::Add(std::string_view name, float* destination,
                            std::string_view placeholder, std::string_view help) {
  return AddFlag(name, destination, placeholder, help, FormatNumber(*destination));
}
FlagSet::Flag& FlagSet::Add(std::string_view name, absl::Duration* destination,
                            std::string_view placeholder, std::string_view help) {
  return AddFlag(name, destination, placeholder, help, absl::FormatDuration(*destination));
}
FlagSet::Flag& FlagSet::Add(std::string_view name, bool* destination, std::string_view help) {
  return AddFlag(name, destination, "", help, *destination ? "true" : "false");
}

const FlagSet::Flag* FlagSet::Find(std::string_view canonical_name) const {
  for (const Flag& flag : flags_) {
    if (flag.name == canonical_name) return &flag;
  }
  return nullptr;
}

std::string FlagSet::SetValue(const Flag& flag, const std::string& value,
                              std::set<std::string>& given) {
  const std::string got = absl::StrCat(", got ", Quoted(value));
  const bool first = given.insert(flag.name).second;
  return std::visit(
      Overloaded{
          [&](std::string* out) -> std::string {
            if (!flag.choices.empty() &&
                std::find(flag.choices.begin(), flag.choices.end(), value) == flag.choices.end()) {
              std::string expected = absl::StrJoin(flag.choices, ", ");
              if (flag.choices.size() > 1) {
                const size_t last = expected.rfind(", ");
                expected.replace(last, 2, " or ");
              }
              return absl::StrCat("expected ", expected, got);
            }
            *out = value;
            return "";
          },
          [&](std::vector<std::string>* out) -> std::string {
            if (first) out->clear();
            out->push_back(value);
            return "";
          },
          [&](bool* out) -> std::string {
            if (value == "true" || value == "1") {
              *out = true;
            } else if (value == "false" || value == "0") {
              *out = false;
            } else {
              return absl::StrCat("expected true or false", got);
            }
            return "";
          },
          [&](auto* out) -> std::string {
            using T = std::remove_pointer_t<decltype(out)>;
            if constexpr (std::is_same_v<T, absl::Duration>) {
              if (!absl::ParseDuration(value, out)) {
                return absl::StrCat("expected a duration such as 30s, 500ms or 2m", got);
              }
            } else if constexpr (std::is_floating_point_v<T>) {
              double parsed;
              if (!absl::SimpleAtod(value, &parsed) || std::isnan(parsed)) {
                return absl::StrCat("expected a number", got);
              }
              if constexpr (std::is_same_v<T, float>) {
                if (std::isfinite(parsed) && std::abs(parsed) > std::numeric_limits<float>::max()) {
                  return absl::StrCat("number out of range", got);
                }
              }
              *out = static_cast<T>(parsed);
            } else {
              if (!ParseInteger(value, out)) {
                const bool negative = !value.empty() && value[0] == '-';
                const bool digits = value.size() > (negative ? 1u : 0u) &&
                                    value.find_first_not_of("0123456789", negative ? 1 : 0) ==
                                        std::string::npos;
                if (digits && (std::is_signed_v<T> || !negative)) {
                  return absl::StrCat("integer out of range [", std::numeric_limits<T>::min(), ", ",
                                      std::numeric_limits<T>::max(), "]", got);
                }
                return absl::StrCat(std::is_signed_v<T> ? "expected an integer"
                                                        : "expected a non-negative integer",
                                    got);
              }
            }
            return "";
          },
      },
      flag.destination);
}

ParsedArgs FlagSet::Parse(int argc, const char* const* argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  return Parse(args);
}

ParsedArgs FlagSet::Parse(const std::vector<std::string>& args) {
  ParsedArgs result;
  auto fail = [&](std::string message) {
    result.exit = true;
    result.exit_code = kExitUsage;
    result.message = absl::StrCat(program_, ": ", message);
    return result;
  };
  // --help wins over any error: whoever typed it wants to read the help.
  for (const std::string& arg : args) {
    if (arg == "--") break;
    if (arg == "--help" || arg == "-h") {
      result.exit = true;
      result.message = Help();
      return result;
    }
  }
  bool flags_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (flags_done || arg.size() < 2 || arg[0] != '-') {
      result.positional.push_back(arg);
      continue;
    }
    if (arg == "--") {
      flags_done = true;
      continue;
    }
    // "-x" and "--x": only the double-dash form exists (besides -h).
    const size_t equals = arg.find('=');
    const std::string written = arg.substr(0, equals);  // "--kv_cache_mib"
    if (arg[1] != '-') return fail(absl::StrCat("unknown flag ", written, " (see --help)"));
    const std::string name = Canonical(written.substr(2));
    std::optional<std::string> value;
    if (equals != std::string::npos) value = arg.substr(equals + 1);

    const Flag* flag = Find(name);
    if (flag == nullptr && name.rfind("no-", 0) == 0) {
      const Flag* negated = Find(name.substr(3));
      if (negated != nullptr && std::holds_alternative<bool*>(negated->destination)) {
        if (value.has_value()) return fail(absl::StrCat(written, ": takes no value"));
        flag = negated;
        value = "false";
      }
    }
    if (flag == nullptr) return fail(absl::StrCat("unknown flag ", written, " (see --help)"));
    if (!value.has_value()) {
      if (std::holds_alternative<bool*>(flag->destination)) {
        value = "true";
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return fail(absl::StrCat("--", flag->name, ": missing value (--", flag->name, "=",
                                 flag->placeholder.empty() ? "VALUE" : flag->placeholder, ")"));
      }
    }
    if (std::string error = SetValue(*flag, *value, result.given); !error.empty()) {
      return fail(absl::StrCat("--", flag->name, ": ", error));
    }
  }
  return result;
}

ParsedArgs FlagSet::ParseOrExit(int argc, char** argv) {
  ParsedArgs result = Parse(argc, argv);
  if (result.exit) {
    if (result.exit_code == kExitOk) {
      std::cout << result.message << std::flush;
    } else {
      std::cerr << result.message << "\n" << std::flush;
    }
    std::exit(result.exit_code);
  }
  return result;
}

std::string FlagSet::Help() const {
  auto left_column = [](const Flag& flag) {
    return flag.placeholder.empty() ? absl::StrCat("--", flag.name)
                                    : absl::StrCat("--", flag.name, "=", flag.placeholder);
  };
  const std::string help_flag = "-h, --help";
  size_t width = help_flag.size();
  for (const Flag& flag : flags_) {
    const size_t length = left_column(flag).size();
    if (length <= kMaxNameColumn) width = std::max(width, length);
  }
  auto line = [&](const std::string& left, const std::string& text) {
    if (left.size() > width) {
      return absl::StrCat("  ", left, "\n", std::string(width + 5, ' '), text, "\n");
    }
    return absl::StrCat("  ", left, std::string(width - left.size() + 3, ' '), text, "\n");
  };

  std::string help = absl::StrCat("Usage: ", program_, " [flags]",
                                  arguments_.empty() ? "" : " ", arguments_, "\n");
  if (!description_.empty()) {
    absl::StrAppend(&help, "\n", description_);
    if (description_.back() != '\n') help += '\n';
  }
  for (size_t section = 0; section < sections_.size(); ++section) {
    const bool empty = std::none_of(flags_.begin(), flags_.end(),
                                    [&](const Flag& flag) { return flag.section == section; });
    if (empty && section != 0) continue;
    absl::StrAppend(&help, "\n", section == 0 ? "Flags" : sections_[section], ":\n");
    if (section == 0) help += line(help_flag, "Print this help and exit");
    for (const Flag& flag : flags_) {
      if (flag.section != section) continue;
      std::string text = flag.help;
      if (!flag.default_text.empty()) absl::StrAppend(&text, " (default: ", flag.default_text, ")");
      help += line(left_column(flag), text);
    }
  }
  return help;
}

int FlagSet::UsageError(std::string_view message) const {
  std::cerr << program_ << ": " << message << "\n" << std::flush;
  return kExitUsage;
}

}  // namespace kestrel
