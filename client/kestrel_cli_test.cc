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
      RunKestrel({"generate", "hi", "--address=" + fake->address(), "--max_tokens=3", "--json"});
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

TEST_CASE("Bad usage exits 2 with a clear message") {
  Result unknown = RunKestrel({"generate", "x", "--max-tokenz=3"});
  CHECK(unknown.exit_code == 2);
  CHECK(unknown.err.find("unknown flag '--max-tokenz=3'") != std::string::npos);
  Result bad_value = RunKestrel({"generate", "x", "--max-tokens=lots"});
  CHECK(bad_value.exit_code == 2);
  CHECK(bad_value.err.find("--max_tokens") != std::string::npos);
  CHECK(RunKestrel({}).exit_code == 2);
  CHECK(RunKestrel({"frobnicate"}).err.find("unknown command 'frobnicate'") != std::string::npos);
  CHECK(RunKestrel({"generate"}).exit_code == 2);
  CHECK(RunKestrel({"detokenize", "1", "x"}).exit_code == 2);
  CHECK(RunKestrel({"generate", "x", "--tls-roots=/no/such/file.pem", "--tls"}).exit_code == 2);
  Result help = RunKestrel({"--help"});
  CHECK(help.exit_code == 0);
  CHECK(help.out.find("--max-tokens") != std::string::npos);
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
