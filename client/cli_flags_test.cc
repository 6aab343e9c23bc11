// Tests of the tools' flag parser: every way a user can spell a flag, and
// every way they can get it wrong.
#include "client/cli_flags.h"

#include <catch2/catch.hpp>

#include "absl/flags/flag.h"

ABSL_FLAG(int, test_count, 1, "A number.");
ABSL_FLAG(bool, test_verbose, false, "A switch.");
ABSL_FLAG(std::string, test_name, "", "A string.");

namespace kestrel::client {
namespace {

absl::StatusOr<CommandLine> Parse(std::vector<std::string> args) {
  args.insert(args.begin(), "tool");
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  return ParseFlags(static_cast<int>(argv.size()), argv.data());
}

TEST_CASE("Flags parse in every spelling; positionals are kept in order") {
  auto line = Parse({"generate", "--test-count=5", "hello", "--test_name", "x y", "--test-verbose",
                     "--", "--not-a-flag"});
  REQUIRE(line.ok());
  CHECK(line->positional == std::vector<std::string>{"generate", "hello", "--not-a-flag"});
  CHECK(absl::GetFlag(FLAGS_test_count) == 5);
  CHECK(absl::GetFlag(FLAGS_test_name) == "x y");
  CHECK(absl::GetFlag(FLAGS_test_verbose));
  CHECK(line->specified == std::set<std::string>{"test_count", "test_name", "test_verbose"});
  CHECK_FALSE(line->help);

  REQUIRE(Parse({"--notest-verbose", "-h"}).ok());
  CHECK_FALSE(absl::GetFlag(FLAGS_test_verbose));
  CHECK(Parse({"--help"})->help);
}

TEST_CASE("Bad flags are errors that name the flag") {
  auto unknown = Parse({"--no-such-flag=1"});
  CHECK(unknown.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(unknown.status().message() == "unknown flag '--no-such-flag=1'");
  auto bad_value = Parse({"--test-count=abc"});
  CHECK(bad_value.status().message().find("bad value 'abc' for --test_count") != std::string::npos);
  CHECK(Parse({"--test-name"}).status().message() == "flag '--test-name' needs a value");
}

TEST_CASE("FlagHelp lists the flags of one file") {
  const std::string help = FlagHelp("cli_flags_test");
  CHECK(help.find("--test-count=1") != std::string::npos);
  CHECK(help.find("A switch.") != std::string::npos);
}

}  // namespace
}  // namespace kestrel::client
