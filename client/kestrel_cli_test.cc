// Runs the real `kestrel` binary against the fake server: output, exit
// codes and messages a user or a script would see.
#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/fake_kestrel_server.h"
#include "nlohmann/json.hpp"
#include "testing/subprocess.h"

namespace kestrel::client {
namespace {

namespace v1 = ::kestrel::v1;
using testing::FakeFault;
using testing::FakeKestrelServer;
namespace fs = std::filesystem;

struct Result {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string Slurp(const fs::path& path) {
  std::ifstream file(path);
  std::stringstream contents;
  contents << file.rdbuf();
  return contents.str();
}

std::string Quote(const std::string& arg) {
  std::string quoted = "'";
  for (char c : arg) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

// Runs kestrel with `args`, feeding `input` on stdin.
Result RunKestrel(const std::vector<std::string>& args, const std::string& input = "") {
  const fs::path dir = kestrel::testing::MakeTempDir("kestrel_cli");
  std::ofstream(dir / "in") << input;
  std::string command = "exec " + Quote(kestrel::testing::RunfilePath("client/kestrel").string());
  for (const std::string& arg : args) command += " " + Quote(arg);
  command += " <" + Quote((dir / "in").string()) + " >" + Quote((dir / "out").string()) + " 2>" +
             Quote((dir / "err").string());
  auto process = kestrel::testing::Subprocess::Start({"/bin/sh", "-c", command});
  REQUIRE(process.has_value());
  std::optional<int> exit_code = process->WaitForExit(std::chrono::seconds(30));
  REQUIRE(exit_code.has_value());
  return {*exit_code, Slurp(dir / "out"), Slurp(dir / "err")};
}

std::unique_ptr<FakeKestrelServer> StartFake(FakeKestrelServer::Options options = {}) {
  options.ttft = absl::Milliseconds(2);
  options.itl = absl::Milliseconds(1);
  auto fake = FakeKestrelServer::Create(options);
  REQUIRE(fake.ok());
  return std::move(fake).value();
}

TEST_CASE("generate streams the text to stdout and sends every flag") {
  auto fake = StartFake();
  Result result = RunKestrel({"generate", "Once upon a time", "--address", fake->address(),
                              "--max-tokens=6", "--temperature=0", "--top-k=5", "--seed=7",
                              "--stop=\\n\\n,The end", "--stop-token-ids=2,3", "--ignore-eos",
                              "--logit-bias=13:-100", "--api-key=k", "--request-id=r1"});
  CHECK(result.exit_code == 0);
  CHECK(result.out == " Once upon a time Once upon\n");
  CHECK(result.err.find("FINISH_REASON_LENGTH, 17 prompt + 6 completion tokens") !=
        std::string::npos);
  auto calls = fake->generate_calls();
  REQUIRE(calls.size() == 1);
  const v1::GenerateRequest& request = calls[0].request;
  CHECK(request.text() == "Once upon a time");
  CHECK(request.request_id() == "r1");
  CHECK(request.stopping().max_tokens() == 6);
  CHECK(request.sampling().has_temperature());
  CHECK(request.sampling().temperature() == 0.0f);
  CHECK(request.sampling().top_k() == 5);
  CHECK(request.sampling().seed() == 7);
  CHECK_FALSE(request.sampling().has_top_p());  // Not given: the server's default.
  REQUIRE(request.stopping().stop_size() == 2);
  CHECK(request.stopping().stop(0) == "\n\n");
  CHECK(request.stopping().stop(1) == "The end");
  CHECK(request.stopping().stop_token_ids_size() == 2);
  CHECK(request.stopping().ignore_eos());
  CHECK(request.sampling().logit_bias().at(13) == -100.0f);
  CHECK(calls[0].authorization == "Bearer k");
}

TEST_CASE("generate --json prints one JSON object per event") {
  auto fake = StartFake();
  Result result =
      RunKestrel({"generate", "hi", "--address=" + fake->address(), "--max-tokens=3", "--json"});
  CHECK(result.exit_code == 0);
  std::istringstream lines(result.out);
  std::string line;
  std::vector<nlohmann::json> events;
  while (std::getline(lines, line)) events.push_back(nlohmann::json::parse(line));
  REQUIRE(events.size() == 4);
  CHECK(events[0]["chunk"]["text"] == " Once");
  CHECK(events[3]["finished"]["reason"] == "FINISH_REASON_LENGTH");
  CHECK(events[3]["finished"]["usage"]["completion_tokens"] == 3);
}

TEST_CASE("chat keeps the conversation as the prompt") {
  auto fake = StartFake();
  Result result = RunKestrel({"chat", "--address", fake->address(), "--max-tokens=2"},
                             "Hello\n\nHow are you?\n/exit\nignored\n");
  CHECK(result.exit_code == 0);
  CHECK(result.out == " Once upon\n Once upon\n");
  auto calls = fake->generate_calls();
  REQUIRE(calls.size() == 2);
  CHECK(calls[0].request.text() == "User: Hello\nAssistant:");
  CHECK(calls[1].request.text() ==
        "User: Hello\nAssistant: Once upon\nUser: How are you?\nAssistant:");
  CHECK(calls[1].request.stopping().stop(0) == "\nUser:");
}

TEST_CASE("chat sends messages to a model with a chat template") {
  FakeKestrelServer::Options options;
  options.has_chat_template = true;
  auto fake = StartFake(options);
  Result result = RunKestrel({"chat", "--address", fake->address(), "--max-tokens=2", "--system=Be kind."},
                             "Hello\nHow are you?\n/reset\nAgain\n");
  CHECK(result.exit_code == 0);
  CHECK(result.out == " Once upon\n Once upon\n Once upon\n");
  auto calls = fake->generate_calls();
  REQUIRE(calls.size() == 3);
  auto roles = [](const v1::GenerateRequest& request) {
    std::vector<std::string> out;
    for (const auto& m : request.chat().messages()) out.push_back(m.role() + ":" + m.content());
    return out;
  };
  CHECK(roles(calls[0].request) == std::vector<std::string>{"system:Be kind.", "user:Hello"});
  CHECK(roles(calls[1].request) == std::vector<std::string>{"system:Be kind.", "user:Hello",
                                                            "assistant: Once upon", "user:How are you?"});
  CHECK(roles(calls[2].request) == std::vector<std::string>{"system:Be kind.", "user:Again"});
  CHECK(calls[1].request.stopping().stop_size() == 0);  // the template's end-of-turn token stops it
  CHECK(calls[1].request.stopping().max_tokens() == 2);
}

TEST_CASE("tokenize, detokenize, info and health") {
  auto fake = StartFake();
  const std::string address = "--address=" + fake->address();
  Result tokens = RunKestrel({"tokenize", "ab", address});
  CHECK(tokens.exit_code == 0);
  CHECK(tokens.out == "1 100 101\n");
  Result text = RunKestrel({"detokenize", "1", "100", "101", address});
  CHECK(text.exit_code == 0);
  CHECK(text.out == "ab\n");
  Result info = RunKestrel({"info", address});
  CHECK(info.exit_code == 0);
  CHECK(info.out.find("fake-model (llama, F32, 260000 parameters)") != std::string::npos);
  Result info_json = RunKestrel({"info", address, "--json"});
  CHECK(nlohmann::json::parse(info_json.out)["model"]["context_length"] == 2048);
  Result health = RunKestrel({"health", address});
  CHECK(health.exit_code == 0);
  CHECK(health.out == "SERVING\n");
}

TEST_CASE("--logprobs=N asks for log-probabilities with N alternatives; -1 (default) is off") {
  auto fake = StartFake();
  const std::string address = "--address=" + fake->address();
  for (const char* flag : {"--logprobs=3", "--logprobs=0", "--logprobs=-1", "--max-tokens=2"}) {
    CHECK(RunKestrel({"generate", "x", address, flag, "--json"}).exit_code == 0);
  }
  auto calls = fake->generate_calls();
  REQUIRE(calls.size() == 4);
  CHECK(calls[0].request.output().logprobs());
  CHECK(calls[0].request.output().top_logprobs() == 3);
  CHECK(calls[1].request.output().logprobs());
  CHECK(calls[1].request.output().top_logprobs() == 0);
  CHECK_FALSE(calls[2].request.output().logprobs());
  CHECK_FALSE(calls[3].request.output().logprobs());
}

// The command-line contract shared by every binary (docs/cli.md): a usage
// error is exit 2 and one stderr line naming the flag; --help is exit 0.
TEST_CASE("Bad usage exits 2 with one line naming the flag") {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"generate", "x", "--max-tokenz=3"}, "kestrel: unknown flag --max-tokenz (see --help)\n"},
      {{"generate", "x", "--top-logprobs=3"},
       "kestrel: unknown flag --top-logprobs (see --help)\n"},
      {{"generate", "x", "--max-tokens=lots"},
       "kestrel: --max-tokens: expected an integer, got \"lots\"\n"},
      {{"generate", "x", "--temperature", "hot"},
       "kestrel: --temperature: expected a number, got \"hot\"\n"},
      {{"generate", "x", "--timeout=5"},
       "kestrel: --timeout: expected a duration such as 30s, 500ms or 2m, got \"5\"\n"},
      {{"generate", "x", "--logprobs"}, "kestrel: --logprobs: missing value (--logprobs=N)\n"},
      {{"generate", "x", "--logprobs=21"}, "kestrel: --logprobs: must be in [-1, 20], got 21\n"},
      {{}, "kestrel: missing command (see --help)\n"},
      {{"frobnicate"}, "kestrel: unknown command 'frobnicate' (see --help)\n"},
  };
  for (const auto& [args, message] : cases) {
    Result result = RunKestrel(args);
    INFO(absl::StrJoin(args, " "));
    CHECK(result.exit_code == 2);
    CHECK(result.err == message);
  }
  CHECK(RunKestrel({"generate"}).exit_code == 2);
  CHECK(RunKestrel({"detokenize", "1", "x"}).exit_code == 2);
  Result missing_file = RunKestrel({"generate", "x", "--tls-ca-file=/no/such/file.pem", "--tls"});
  CHECK(missing_file.exit_code == 2);
  CHECK(missing_file.err.rfind("kestrel: --tls-ca-file: cannot open /no/such/file.pem", 0) == 0);
}

TEST_CASE("--help exits 0 in the common format") {
  Result help = RunKestrel({"--help"});
  CHECK(help.exit_code == 0);
  CHECK(help.err.empty());
  CHECK(help.out.rfind("Usage: kestrel [flags] <command> [arguments]\n", 0) == 0);
  CHECK(help.out.find("\nFlags:\n  -h, --help ") != std::string::npos);
  for (const char* line : {"\n  --max-tokens=N ", "\n  --logprobs=N ", "\n  --address=HOST:PORT ",
                           "\n  --tls-ca-file=PEM ", "\n  --ignore-eos "}) {
    CHECK(help.out.find(line) != std::string::npos);
  }
  CHECK(RunKestrel({"generate", "-h"}).out == help.out);
}

TEST_CASE("Server trouble maps to the documented exit codes") {
  SECTION("unreachable: 3") {
    std::string address;
    {
      auto fake = StartFake();
      address = fake->address();
    }
    Result result = RunKestrel({"generate", "x", "--address", address, "--max-attempts=1"});
    CHECK(result.exit_code == 3);
    CHECK(result.err.find("is a server running at " + address) != std::string::npos);
    CHECK(RunKestrel({"health", "--address", address, "--max-attempts=1"}).exit_code == 3);
  }
  SECTION("server error: 4, after the text already streamed") {
    FakeKestrelServer::Options options;
    options.fault = [](int, const v1::GenerateRequest&) -> std::optional<FakeFault> {
      return FakeFault{{grpc::StatusCode::INVALID_ARGUMENT, "sampling.top_p must be in (0, 1]"}, 2};
    };
    auto fake = StartFake(options);
    Result result = RunKestrel({"generate", "x", "--address", fake->address()});
    CHECK(result.exit_code == 4);
    CHECK(result.out == " Once upon");
    CHECK(result.err.find("sampling.top_p must be in (0, 1]") != std::string::npos);
  }
  SECTION("a server that stopped answering: 5, on time") {
    auto fake = StartFake();
    fake->SetHanging(true);
    const absl::Time start = absl::Now();
    Result result = RunKestrel({"generate", "x", "--address", fake->address(), "--timeout=300ms"});
    CHECK(result.exit_code == 5);
    CHECK(absl::Now() - start < absl::Seconds(10));
  }
  SECTION("bad API key: 6") {
    FakeKestrelServer::Options options;
    options.required_api_key = "right";
    auto fake = StartFake(options);
    CHECK(RunKestrel({"info", "--address", fake->address(), "--api-key=wrong"}).exit_code == 6);
  }
}

}  // namespace
}  // namespace kestrel::client
