// Runs the real kestrel-chat-template binary: its command-line contract
// (exit codes, one-line usage errors, --help; docs/cli.md) and renders over
// the shared Llama 3 tokenizer, where a bad line does not stop the rest.
#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "testing/shared_data.h"
#include "testing/subprocess.h"

namespace kestrel::chat {
namespace {

using ::kestrel::testing::RunAndCapture;
using Json = nlohmann::ordered_json;

std::string Binary() {
  return ::kestrel::testing::RunfilePath("model/chat/kestrel-chat-template").string();
}

// Runs the binary with `input` on stdin (through the shell).
::kestrel::testing::CapturedRun RunWithInput(const std::vector<std::string>& args,
                                             const std::string& input) {
  const auto dir = ::kestrel::testing::MakeTempDir("kestrel_chat_template");
  std::ofstream(dir / "in") << input;
  std::string command = "exec \"$0\" \"$@\" < '" + (dir / "in").string() + "'";
  std::vector<std::string> argv = {"/bin/sh", "-c", command, Binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  auto run = RunAndCapture(argv);
  REQUIRE(run.has_value());
  return *run;
}

std::vector<Json> OutputLines(const std::string& out) {
  std::vector<Json> lines;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) lines.push_back(Json::parse(line));
  return lines;
}

TEST_CASE("kestrel-chat-template usage errors exit 2 with one stderr line naming the flag") {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--model=x", "--tokenizer=y"}, "kestrel-chat-template: unknown flag --tokenizer (see --help)\n"},
      {{"--model"}, "kestrel-chat-template: --model: missing value (--model=DIR)\n"},
      {{}, "kestrel-chat-template: --model: required (--model=DIR)\n"},
      {{"--model=x", "extra"}, "kestrel-chat-template: unexpected argument 'extra' (see --help)\n"},
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

TEST_CASE("kestrel-chat-template --help exits 0 in the common format") {
  auto run = RunAndCapture({Binary(), "--help"});
  REQUIRE(run.has_value());
  CHECK(run->exit_status == 0);
  CHECK(run->err.empty());
  CHECK(run->out.rfind("Usage: kestrel-chat-template [flags] < requests.jsonl\n", 0) == 0);
  CHECK(run->out.find("\n  --model=DIR ") != std::string::npos);
}

TEST_CASE("kestrel-chat-template: a model without a chat template is exit 1") {
  auto missing = RunAndCapture({Binary(), "--model=/no/such/dir"});
  REQUIRE(missing.has_value());
  CHECK(missing->exit_status == 1);
  CHECK(missing->err.find("/no/such/dir has no chat template") != std::string::npos);
  KESTREL_SHARED_PATH_OR_SKIP(mistral, "tokenizers/mistral_v0_1");
  auto run = RunAndCapture({Binary(), "--model=" + mistral.string()});
  REQUIRE(run.has_value());
  CHECK(run->exit_status == 1);
  CHECK(run->err.find("has no chat template") != std::string::npos);
}

TEST_CASE("kestrel-chat-template renders and tokenizes with Llama 3; bad lines are exit 3") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "tokenizers/llama3");
  const std::string input =
      R"({"messages": [{"role": "user", "content": " Hello "}], "options": {"add_generation_prompt": true}})"
      "\n"
      "not json\n"
      R"({"messages": "not a list"})"
      "\n\n"
      R"({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], "tools": [], "options": {"enable_thinking": false}})"
      "\n";
  auto run = RunWithInput({"--model=" + dir.string()}, input);
  CHECK(run.exit_status == 3);
  const std::vector<Json> lines = OutputLines(run.out);
  REQUIRE(lines.size() == 4);
  CHECK(lines[0]["rendered"] ==
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n");
  // Special tokens are parsed, none added: exactly one <|begin_of_text|>.
  CHECK(lines[0]["ids"] == Json::parse("[128000, 128006, 882, 128007, 271, 9906, 128009, 128006, "
                                        "78191, 128007, 271]"));
  CHECK(lines[1]["error"] == "input line: not valid JSON");
  CHECK(lines[2]["error"] == "messages must be a JSON array, got string");
  CHECK(lines[3]["rendered"].get<std::string>().rfind(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>", 0) == 0);
  CHECK(lines[3]["ids"][0] == 128000);
}

}  // namespace
}  // namespace kestrel::chat
