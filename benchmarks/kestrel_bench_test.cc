// Runs the real kestrel-bench binary: a full run against the fake server
// with its JSON report, a sweep with its plot, and every kind of bad input
// (exit codes and messages a user or a script would see).
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/fake_kestrel_server.h"
#include "nlohmann/json.hpp"
#include "testing/subprocess.h"

namespace kestrel::bench {
namespace {

using client::testing::FakeKestrelServer;
namespace fs = std::filesystem;

struct Result {
  int exit_code = -1;
  std::string output;  // stdout and stderr.
  absl::Duration took;
};

std::string Slurp(const fs::path& path) {
  std::ifstream file(path);
  std::stringstream contents;
  contents << file.rdbuf();
  return contents.str();
}

Result RunBench(std::vector<std::string> args) {
  const fs::path log = kestrel::testing::MakeTempDir("kestrel_bench") / "log";
  args.insert(args.begin(), kestrel::testing::RunfilePath("benchmarks/kestrel-bench").string());
  const absl::Time start = absl::Now();
  auto process = kestrel::testing::Subprocess::Start(args, log);
  REQUIRE(process.has_value());
  std::optional<int> exit_code = process->WaitForExit(std::chrono::seconds(60));
  REQUIRE(exit_code.has_value());
  return {*exit_code, Slurp(log), absl::Now() - start};
}

std::unique_ptr<FakeKestrelServer> StartFake() {
  FakeKestrelServer::Options options;
  options.ttft = absl::Milliseconds(10);
  options.itl = absl::Milliseconds(2);
  auto fake = FakeKestrelServer::Create(options);
  REQUIRE(fake.ok());
  return std::move(fake).value();
}

std::string WriteFile(const std::string& contents) {
  const fs::path path = kestrel::testing::MakeTempDir("dataset") / "prompts.jsonl";
  std::ofstream(path) << contents;
  return path.string();
}

TEST_CASE("A run reports every figure on stdout and in --json-out") {
  auto fake = StartFake();
  const fs::path json_path = kestrel::testing::MakeTempDir("bench_json") / "out.json";
  Result result =
      RunBench({"--address=" + fake->address(), "--num-requests=20", "--max-concurrency=4",
                "--input-len=8", "--output-len=5", "--warmup-requests=2", "--slo-ttft-ms=5000",
                "--slo-tpot-ms=5000", "--json-out=" + json_path.string(), "--save-requests"});
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  for (const char* figure : {"Request throughput", "Input token throughput",
                             "Output token throughput", "Total token throughput", "Goodput", "TTFT",
                             "TPOT", "ITL", "E2E", "median", "p90", "p99", "max"}) {
    INFO(figure);
    CHECK(result.output.find(figure) != std::string::npos);
  }
  CHECK(fake->generate_calls().size() == 22);
  nlohmann::json json = nlohmann::json::parse(Slurp(json_path));
  CHECK(json["summary"]["completed"] == 20);
  CHECK(json["summary"]["output_tokens"] == 100);
  CHECK(json["summary"]["input_tokens"] == 160);
  CHECK(json["summary"]["good_requests"] == 20);
  CHECK(json["summary"]["ttft"]["count"] == 20);
  CHECK(json["config"]["max_concurrency"] == 4);
  CHECK(json["requests"].size() == 20);
}

TEST_CASE("A dataset's prompts are sent as text") {
  auto fake = StartFake();
  const std::string dataset =
      WriteFile("{\"prompt\": \"Once upon a time\", \"output_tokens\": 3}\n{\"prompt\": \"Hi\"}\n");
  Result result = RunBench({"--address", fake->address(), "--dataset", dataset, "--num-requests=4",
                            "--output-len=2", "--ignore-eos"});
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  auto calls = fake->generate_calls();
  REQUIRE(calls.size() == 4);
  std::multiset<std::string> prompts;
  for (const auto& call : calls) prompts.insert(call.request.text());
  CHECK(prompts.count("Once upon a time") == 2);
  CHECK(prompts.count("Hi") == 2);
}

TEST_CASE("--sweep writes one JSON per rate and a PNG plot") {
  auto fake = StartFake();
  const fs::path dir = kestrel::testing::MakeTempDir("sweep") / "out";
  Result result = RunBench({"--address=" + fake->address(), "--sweep=100,inf", "--num-requests=6",
                            "--input-len=4", "--output-len=4", "--sweep-dir=" + dir.string()});
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  CHECK(nlohmann::json::parse(Slurp(dir / "rate_100.json"))["config"]["request_rate"] == "100");
  CHECK(nlohmann::json::parse(Slurp(dir / "rate_inf.json"))["summary"]["completed"] == 6);
  REQUIRE(fs::exists(dir / "sweep.png"));
  CHECK(Slurp(dir / "sweep.png").substr(1, 3) == "PNG");
}

TEST_CASE("Bad input gives a clear message and a non-zero exit") {
  auto fake = StartFake();
  const std::string address = "--address=" + fake->address();
  struct Case {
    std::vector<std::string> args;
    int exit_code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--input-len=zipf:3", address}, 2, "length distribution 'zipf:3'"},
      {{"--dataset=/no/such/prompts.jsonl", address}, 2, "cannot read dataset"},
      {{"--dataset=" + WriteFile("{\"prompt\": \"ok\"}\n{\"prompt\": \n"), address},
       2,
       "prompts.jsonl:2: not valid JSON"},
      {{"--num-requests=0"}, 2, "set a number of requests or a duration"},
      {{"--sweep=1,x"}, 2, "--sweep: 'x' is not a positive rate"},
      {{"--backend=openai", "--base-url=http://127.0.0.1:1", "--probe-timeout=2s"},
       3,
       "the server does not answer"},
  };
  for (const Case& c : cases) {
    Result result = RunBench(c.args);
    INFO(result.output);
    CHECK(result.exit_code == c.exit_code);
    CHECK(result.output.find(c.message) != std::string::npos);
  }
  std::string closed;
  {
    auto gone = StartFake();
    closed = gone->address();
  }
  Result unreachable = RunBench({"--address=" + closed, "--probe-timeout=2s"});
  CHECK(unreachable.exit_code == 3);
  CHECK(unreachable.output.find("the server does not answer") != std::string::npos);
}

// The command-line contract shared by every binary (docs/cli.md): a usage
// error is exit 2 and one stderr line naming the flag; --help is exit 0.
TEST_CASE("Usage errors exit 2 with one stderr line naming the flag") {
  const std::string binary = kestrel::testing::RunfilePath("benchmarks/kestrel-bench").string();
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--num-requestz=5"}, "kestrel-bench: unknown flag --num-requestz (see --help)\n"},
      {{"--tls-roots=x.pem"}, "kestrel-bench: unknown flag --tls-roots (see --help)\n"},
      {{"--request-rate=fast"}, "kestrel-bench: --request-rate: expected a number, got \"fast\"\n"},
      {{"--num-requests", "many"},
       "kestrel-bench: --num-requests: expected an integer, got \"many\"\n"},
      {{"--backend=smoke-signals"},
       "kestrel-bench: --backend: expected kestrel or openai, got \"smoke-signals\"\n"},
      {{"--arrivals=sometimes"},
       "kestrel-bench: --arrivals: expected poisson or constant, got \"sometimes\"\n"},
      {{"--warmup-requests=-1"}, "kestrel-bench: --warmup-requests: must be >= 0, got -1\n"},
      {{"--request-timeout=0s"}, "kestrel-bench: --request-timeout: must be positive, got 0\n"},
      {{"--tls-ca-file"}, "kestrel-bench: --tls-ca-file: missing value (--tls-ca-file=PEM)\n"},
      {{"stray-argument"}, "kestrel-bench: unexpected argument 'stray-argument' (see --help)\n"},
  };
  for (const auto& [args, message] : cases) {
    std::vector<std::string> argv = {binary};
    argv.insert(argv.end(), args.begin(), args.end());
    auto run = kestrel::testing::RunAndCapture(argv);
    REQUIRE(run.has_value());
    INFO(args[0] << " -> stdout: " << run->out);
    CHECK(run->exit_status == 2);
    CHECK(run->err == message);
  }
}

TEST_CASE("--help exits 0 in the common format") {
  auto run = kestrel::testing::RunAndCapture(
      {kestrel::testing::RunfilePath("benchmarks/kestrel-bench").string(), "--help"});
  REQUIRE(run.has_value());
  CHECK(run->exit_status == 0);
  CHECK(run->err.empty());
  CHECK(run->out.rfind("Usage: kestrel-bench [flags]\n", 0) == 0);
  CHECK(run->out.find("\nFlags:\n  -h, --help ") != std::string::npos);
  for (const char* line : {"\n  --address=HOST:PORT ", "\n  --tls-ca-file=PEM ",
                           "\n  --model-name=NAME ", "\n  --ignore-eos "}) {
    CHECK(run->out.find(line) != std::string::npos);
  }
}

TEST_CASE("A bounded run against a server that stops answering ends on time") {
  auto fake = StartFake();
  fake->SetHanging(true);
  Result result = RunBench({"--address=" + fake->address(), "--request-rate=10", "--num-requests=0",
                            "--duration=1s", "--drain-timeout=500ms", "--vocab-size=256"});
  INFO(result.output);
  CHECK(result.exit_code == 4);
  CHECK(result.output.find("every measured request failed") != std::string::npos);
  CHECK(result.output.find("DEADLINE_EXCEEDED") != std::string::npos);
  // 1 s of issuing + 0.5 s drain + 0.5 s grace, plus process start-up.
  CHECK(result.took < absl::Seconds(6));
}

}  // namespace
}  // namespace kestrel::bench
