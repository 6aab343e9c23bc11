// Runs the real kestrel-tokenize binary: its command-line contract (exit
// codes, one-line usage errors, --help; docs/cli.md) and one encode and
// decode round over a shared tokenizer.
#include <catch2/catch.hpp>
#include <fstream>

#include "testing/shared_data.h"
#include "testing/subprocess.h"

namespace kestrel::tokenizer {
namespace {

using ::kestrel::testing::RunAndCapture;

std::string Binary() {
  return ::kestrel::testing::RunfilePath("model/tokenizer/kestrel-tokenize").string();
}

// Runs the binary with `input` on stdin (through the shell).
::kestrel::testing::CapturedRun RunWithInput(const std::vector<std::string>& args,
                                             const std::string& input) {
  const auto dir = ::kestrel::testing::MakeTempDir("kestrel_tokenize");
  std::ofstream(dir / "in") << input;
  std::string command = "exec \"$0\" \"$@\" < '" + (dir / "in").string() + "'";
  std::vector<std::string> argv = {"/bin/sh", "-c", command, Binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  auto run = RunAndCapture(argv);
  REQUIRE(run.has_value());
  return *run;
}

TEST_CASE("kestrel-tokenize usage errors exit 2 with one stderr line naming the flag") {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--tokenizer=x", "--skip_special_token"},
       "kestrel-tokenize: unknown flag --skip_special_token (see --help)\n"},
      {{"--tokenizer=x", "--decode=sometimes"},
       "kestrel-tokenize: --decode: expected true or false, got \"sometimes\"\n"},
      {{"--tokenizer"}, "kestrel-tokenize: --tokenizer: missing value (--tokenizer=DIR)\n"},
      {{}, "kestrel-tokenize: --tokenizer: required (--tokenizer=DIR)\n"},
      {{"--tokenizer=x", "extra"}, "kestrel-tokenize: unexpected argument 'extra' (see --help)\n"},
  };
  for (const auto& [args, message] : cases) {
    std::vector<std::string> argv = {Binary()};
    argv.insert(argv.end(), args.begin(), args.end());
    auto run = RunAndCapture(argv);
    REQUIRE(run.has_value());
    CHECK(run->exit_status == 2);
    CHECK(run->err == message);
    CHECK(run->out.empty());
  }
}

TEST_CASE("kestrel-tokenize --help exits 0 in the common format") {
  auto run = RunAndCapture({Binary(), "--help"});
  REQUIRE(run.has_value());
  CHECK(run->exit_status == 0);
  CHECK(run->err.empty());
  CHECK(run->out.rfind("Usage: kestrel-tokenize [flags] < input.jsonl\n", 0) == 0);
  CHECK(run->out.find("\nFlags:\n  -h, --help ") != std::string::npos);
  CHECK(run->out.find("\n  --tokenizer=DIR ") != std::string::npos);
  CHECK(run->out.find("\n  --skip-special-tokens ") != std::string::npos);
}

TEST_CASE("kestrel-tokenize: a missing tokenizer is exit 1") {
  auto run = RunAndCapture({Binary(), "--tokenizer=/no/such/dir"});
  REQUIRE(run.has_value());
  CHECK(run->exit_status == 1);
  CHECK(run->err.find("/no/such/dir") != std::string::npos);
}

TEST_CASE("kestrel-tokenize encodes and decodes; a bad line is exit 3") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "tokenizers/llama3");
  const std::string tokenizer = "--tokenizer=" + dir.string();
  auto encoded = RunWithInput({tokenizer}, "{\"text\": \"Hello world\"}\n");
  CHECK(encoded.exit_status == 0);
  CHECK(encoded.out.find("\"decoded\":\"Hello world\"") != std::string::npos);
  auto decoded = RunWithInput({tokenizer, "--decode", "--skip-special-tokens"},
                              "{\"ids\": [128000, 9906, 1917]}\n");
  CHECK(decoded.exit_status == 0);
  CHECK(decoded.out == "{\"text\":\"Hello world\"}\n");
  auto bad = RunWithInput({tokenizer}, "{\"text\": \"ok\"}\nnot json\n");
  CHECK(bad.exit_status == 3);
  CHECK(bad.out.find("{\"error\":") != std::string::npos);
}

}  // namespace
}  // namespace kestrel::tokenizer
