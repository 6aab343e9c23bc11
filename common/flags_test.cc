// Tests of FlagSet: every type in every spelling, every way to get a flag
// wrong (with the exact one-line message a user sees), and the --help format.
#include "common/flags.h"

#include <catch2/catch.hpp>
#include <cmath>

namespace kestrel {
namespace {

// Every destination type, with non-zero defaults so "unchanged" is visible.
struct Values {
  std::string name = "demo";
  std::string empty;
  std::string policy = "priority";
  std::vector<std::string> files;
  bool verbose = false;
  bool cache = true;
  int32_t threads = 0;
  int64_t mib = 256;
  uint64_t seed = 7;
  double rate = 1.5;
  float top_p = 1.0f;
  absl::Duration timeout = absl::Seconds(30);
};

struct Fixture {
  Values v;
  FlagSet flags{"tool", "<command> [arguments]", "Does things.\nTwo lines of them."};

  Fixture() {
    flags.Add("name", &v.name, "NAME", "A name");
    flags.Add("empty", &v.empty, "TEXT", "Empty by default");
    flags.Add("scheduling-policy", &v.policy, "", "Order").Choices({"fcfs", "priority"});
    flags.Add("file", &v.files, "PATH", "Repeatable");
    flags.Add("verbose", &v.verbose, "Talk more");
    flags.Section("Engine");
    flags.Add("enable-cache", &v.cache, "Cache things");
    flags.Add("threads", &v.threads, "N", "Threads");
    flags.Add("kv-cache-mib", &v.mib, "MIB", "Memory for the paged KV cache");
    flags.Add("seed", &v.seed, "N", "Seed").DefaultText("random");
    flags.Add("rate", &v.rate, "RPS", "Rate");
    flags.Add("top-p", &v.top_p, "P", "Nucleus mass");
    flags.Add("timeout", &v.timeout, "DURATION", "Deadline");
  }

  ParsedArgs Parse(const std::vector<std::string>& args) { return flags.Parse(args); }

  // The one error line for `args`, checking the usage exit code.
  std::string Error(const std::vector<std::string>& args) {
    ParsedArgs result = Parse(args);
    CHECK(result.exit);
    CHECK(result.exit_code == kExitUsage);
    CHECK(result.message.find('\n') == std::string::npos);
    return result.message;
  }
};

TEST_CASE("Defaults are the destinations' initial values") {
  Fixture f;
  ParsedArgs result = f.Parse({});
  CHECK_FALSE(result.exit);
  CHECK(result.positional.empty());
  CHECK(result.given.empty());
  CHECK(f.v.name == "demo");
  CHECK(f.v.threads == 0);
  CHECK(f.v.mib == 256);
  CHECK(f.v.timeout == absl::Seconds(30));
}

TEST_CASE("Every type parses from --name=value and --name value") {
  Fixture f;
  ParsedArgs result =
      f.Parse({"--name=x y", "--empty", "", "--scheduling-policy", "fcfs", "--file=a", "--file", "b",
               "--threads=-3", "--kv-cache-mib", "9000000000", "--seed=18446744073709551615",
               "--rate=inf", "--top-p", "0.5", "--timeout=1m30s"});
  REQUIRE_FALSE(result.exit);
  CHECK(f.v.name == "x y");
  CHECK(f.v.empty.empty());
  CHECK(f.v.policy == "fcfs");
  CHECK(f.v.files == std::vector<std::string>{"a", "b"});
  CHECK(f.v.threads == -3);
  CHECK(f.v.mib == 9000000000);
  CHECK(f.v.seed == 18446744073709551615u);
  CHECK(std::isinf(f.v.rate));
  CHECK(f.v.top_p == 0.5f);
  CHECK(f.v.timeout == absl::Seconds(90));
  CHECK(result.given == std::set<std::string>{"name", "empty", "scheduling-policy", "file",
                                              "threads", "kv-cache-mib", "seed", "rate", "top-p",
                                              "timeout"});
}

TEST_CASE("Dashes and underscores are the same in names") {
  Fixture f;
  ParsedArgs result = f.Parse({"--kv_cache_mib=8", "--top_p", "0.25", "--enable_cache=false"});
  REQUIRE_FALSE(result.exit);
  CHECK(f.v.mib == 8);
  CHECK(f.v.top_p == 0.25f);
  CHECK_FALSE(f.v.cache);
  CHECK(result.Given("kv-cache-mib"));
  CHECK(result.Given("kv_cache_mib"));
  CHECK_FALSE(result.Given("threads"));
}

TEST_CASE("Bools: --name, --name=true|false, --no-name; they never take the next argument") {
  Fixture f;
  REQUIRE_FALSE(f.Parse({"--verbose", "prompt", "--no-enable-cache"}).exit);
  CHECK(f.v.verbose);
  CHECK_FALSE(f.v.cache);
  REQUIRE_FALSE(f.Parse({"--verbose=false", "--enable-cache=true"}).exit);
  CHECK_FALSE(f.v.verbose);
  CHECK(f.v.cache);
  REQUIRE_FALSE(f.Parse({"--no_verbose", "--enable-cache=0"}).exit);
  CHECK_FALSE(f.v.verbose);
  CHECK_FALSE(f.v.cache);
  CHECK(f.Parse({"--verbose", "prompt"}).positional == std::vector<std::string>{"prompt"});
}

TEST_CASE("Positional arguments come back in order; -- ends the flags") {
  Fixture f;
  ParsedArgs result =
      f.Parse({"generate", "--threads=2", "hello", "-", "--", "--threads=5", "--help", "-x"});
  REQUIRE_FALSE(result.exit);
  CHECK(result.positional ==
        std::vector<std::string>{"generate", "hello", "-", "--threads=5", "--help", "-x"});
  CHECK(f.v.threads == 2);
}

TEST_CASE("A list flag's first occurrence replaces its default") {
  Values v;
  v.files = {"default.txt"};
  FlagSet flags("tool", "", "");
  flags.Add("file", &v.files, "PATH", "Files");
  REQUIRE_FALSE(flags.Parse({"--file=a", "--file=b"}).exit);
  CHECK(v.files == std::vector<std::string>{"a", "b"});
}

TEST_CASE("Unknown flags are one line naming the flag") {
  Fixture f;
  CHECK(f.Error({"--foo"}) == "tool: unknown flag --foo (see --help)");
  CHECK(f.Error({"--foo=1"}) == "tool: unknown flag --foo (see --help)");
  CHECK(f.Error({"ok", "-v"}) == "tool: unknown flag -v (see --help)");
  CHECK(f.Error({"--no-threads"}) == "tool: unknown flag --no-threads (see --help)");
  CHECK(f.Error({"--no-verbose=true"}) == "tool: --no-verbose: takes no value");
}

TEST_CASE("Bad values are one line naming the flag and the value") {
  Fixture f;
  CHECK(f.Error({"--threads=x"}) == "tool: --threads: expected an integer, got \"x\"");
  CHECK(f.Error({"--threads", "1.5"}) == "tool: --threads: expected an integer, got \"1.5\"");
  CHECK(f.Error({"--threads=3000000000"}) ==
        "tool: --threads: integer out of range [-2147483648, 2147483647], got \"3000000000\"");
  CHECK(f.Error({"--kv_cache_mib="}) == "tool: --kv-cache-mib: expected an integer, got \"\"");
  CHECK(f.Error({"--seed=-1"}) == "tool: --seed: expected a non-negative integer, got \"-1\"");
  CHECK(f.Error({"--rate=fast"}) == "tool: --rate: expected a number, got \"fast\"");
  CHECK(f.Error({"--rate=nan"}) == "tool: --rate: expected a number, got \"nan\"");
  CHECK(f.Error({"--top-p=1e300"}) == "tool: --top-p: number out of range, got \"1e300\"");
  CHECK(f.Error({"--verbose=yes"}) == "tool: --verbose: expected true or false, got \"yes\"");
  CHECK(f.Error({"--timeout=30"}) ==
        "tool: --timeout: expected a duration such as 30s, 500ms or 2m, got \"30\"");
  CHECK(f.Error({"--scheduling-policy=random"}) ==
        "tool: --scheduling-policy: expected fcfs or priority, got \"random\"");
}

TEST_CASE("A value missing at the end is an error naming the flag") {
  Fixture f;
  CHECK(f.Error({"--threads"}) == "tool: --threads: missing value (--threads=N)");
  CHECK(f.Error({"--name"}) == "tool: --name: missing value (--name=NAME)");
}

TEST_CASE("--help and -h return the help with exit code 0, even after an error") {
  Fixture f;
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"--help"}, {"-h"}, {"--threads=x", "--help"}, {"generate", "-h"}}) {
    ParsedArgs result = f.Parse(args);
    CHECK(result.exit);
    CHECK(result.exit_code == kExitOk);
    CHECK(result.message == f.flags.Help());
  }
}

TEST_CASE("--help format: usage, description, aligned flags with defaults, sections") {
  Fixture f;
  CHECK(f.flags.Help() ==
        "Usage: tool [flags] <command> [arguments]\n"
        "\n"
        "Does things.\n"
        "Two lines of them.\n"
        "\n"
        "Flags:\n"
        "  -h, --help                          Print this help and exit\n"
        "  --name=NAME                         A name (default: \"demo\")\n"
        "  --empty=TEXT                        Empty by default\n"
        "  --scheduling-policy=fcfs|priority   Order (default: \"priority\")\n"
        "  --file=PATH                         Repeatable\n"
        "  --verbose                           Talk more (default: false)\n"
        "\n"
        "Engine:\n"
        "  --enable-cache                      Cache things (default: true)\n"
        "  --threads=N                         Threads (default: 0)\n"
        "  --kv-cache-mib=MIB                  Memory for the paged KV cache (default: 256)\n"
        "  --seed=N                            Seed (default: random)\n"
        "  --rate=RPS                          Rate (default: 1.5)\n"
        "  --top-p=P                           Nucleus mass (default: 1)\n"
        "  --timeout=DURATION                  Deadline (default: 30s)\n");
}

TEST_CASE("Help puts the text of a very long flag on its own line; no description is fine") {
  int32_t value = 1;
  FlagSet flags("t", "", "");
  flags.Add("a", &value, "N", "Short");
  flags.Add("a-very-long-flag-name-that-is-too-wide", &value, "COUNT", "Long");
  CHECK(flags.Help() ==
        "Usage: t [flags]\n"
        "\n"
        "Flags:\n"
        "  -h, --help   Print this help and exit\n"
        "  --a=N        Short (default: 1)\n"
        "  --a-very-long-flag-name-that-is-too-wide=COUNT\n"
        "               Long (default: 1)\n");
}

TEST_CASE("Parse from argv skips argv[0]") {
  Fixture f;
  const char* argv[] = {"/path/to/tool", "--threads=4", "x"};
  ParsedArgs result = f.flags.Parse(3, argv);
  CHECK_FALSE(result.exit);
  CHECK(f.v.threads == 4);
  CHECK(result.positional == std::vector<std::string>{"x"});
}

}  // namespace
}  // namespace kestrel
