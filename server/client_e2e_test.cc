// The client tools against a live kestrel-server on stories260K: `kestrel
// generate` prints the golden greedy text, and a kestrel-bench run of 200
// requests at concurrency 16 reports every figure, with token counts that
// agree with the server's own Prometheus counters.
#include <fstream>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>

#include "nlohmann/json.hpp"
#include "server/test_server.h"
#include "testing/shared_data.h"

namespace kestrel::server {
namespace {

using namespace std::chrono_literals;
using ::kestrel::testing::RunfilePath;
using ::kestrel::testing::Subprocess;

std::string ReadAll(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs `argv` to completion; stdout to `out`, stderr to `err`.
int Run(const std::vector<std::string>& argv, const std::filesystem::path& out,
        const std::filesystem::path& err) {
  // Subprocess sends both streams to one file; wrap in sh to split them.
  std::string command;
  for (const std::string& arg : argv) command += "'" + arg + "' ";
  command += "> '" + out.string() + "' 2> '" + err.string() + "'";
  auto process = Subprocess::Start({"/bin/sh", "-c", command});
  REQUIRE(process.has_value());
  std::optional<int> status = process->WaitForExit(180s);
  REQUIRE(status.has_value());
  return *status;
}

// Sum of every sample of the counter `name` in a /metrics text.
double Counter(const std::string& metrics, const std::string& name) {
  double total = 0;
  std::istringstream lines(metrics);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind(name + "{", 0) == 0 || line.rfind(name + " ", 0) == 0) {
      total += std::stod(line.substr(line.rfind(' ') + 1));
    }
  }
  return total;
}

TEST_CASE("kestrel and kestrel-bench against a live server") {
  KESTREL_SHARED_PATH_OR_SKIP(model_dir, "models/stories260K");
  std::optional<TestServer> server =
      TestServer::Start({"--model=" + model_dir.string(), "--threads=2"});
  REQUIRE(server.has_value());
  const auto dir = ::kestrel::testing::MakeTempDir("client_e2e");

  SECTION("kestrel generate prints the golden greedy text") {
    nlohmann::json golden = nlohmann::json::parse(ReadAll(model_dir / "golden/greedy.json"));
    const int status = Run({RunfilePath("client/kestrel").string(), "generate",
                            "--address=" + server->Address(), "--temperature=0",
                            "--max-tokens=60", golden["prompt"].get<std::string>()},
                           dir / "out", dir / "err");
    INFO("stderr: " << ReadAll(dir / "err"));
    CHECK(status == 0);
    CHECK(ReadAll(dir / "out") == golden["greedy"]["output_text"].get<std::string>() + "\n");
  }

  SECTION("kestrel-bench: 200 requests at concurrency 16 agree with the server's counters") {
    const std::string before = server->ScrapeMetrics();
    REQUIRE_FALSE(before.empty());
    const std::filesystem::path json = dir / "bench.json";
    const int status = Run({RunfilePath("benchmarks/kestrel-bench").string(),
                            "--address=" + server->Address(), "--num-requests=200",
                            "--max-concurrency=16", "--input-len=uniform:8:64",
                            "--output-len=uniform:8:48", "--ignore-eos", "--slo-ttft-ms=1000",
                            "--slo-tpot-ms=100", "--json-out=" + json.string()},
                           dir / "out", dir / "err");
    INFO("stdout: " << ReadAll(dir / "out") << "\nstderr: " << ReadAll(dir / "err"));
    REQUIRE(status == 0);
    const std::string after = server->ScrapeMetrics();
    nlohmann::json report = nlohmann::json::parse(ReadAll(json));
    const nlohmann::json& s = report["summary"];
    CHECK(s["requests"] == 200);
    CHECK(s["completed"] == 200);
    CHECK(s["failed"] == 0);
    for (const char* figure : {"ttft", "tpot", "itl", "e2e"}) {
      INFO(figure);
      for (const char* stat : {"mean_ms", "median_ms", "p90_ms", "p99_ms", "max_ms"}) {
        REQUIRE(s[figure].contains(stat));
        CHECK(s[figure][stat].get<double>() >= 0);
      }
    }
    CHECK(s["request_throughput"].get<double>() > 0);
    CHECK(s["output_token_throughput"].get<double>() > 0);
    CHECK(s["total_token_throughput"].get<double>() > 0);
    CHECK(s.contains("goodput"));
    // The bench counts tokens from the server's usage; the server counts
    // them in its metrics. Both must agree exactly for the run.
    const double prompt = Counter(after, "kestrel_prompt_tokens_total") -
                          Counter(before, "kestrel_prompt_tokens_total");
    const double generated = Counter(after, "kestrel_generation_tokens_total") -
                             Counter(before, "kestrel_generation_tokens_total");
    CHECK(prompt == s["input_tokens"].get<double>());
    CHECK(generated == s["output_tokens"].get<double>());
    CHECK(Counter(after, "kestrel_requests_total") - Counter(before, "kestrel_requests_total") >= 200);
  }
}

}  // namespace
}  // namespace kestrel::server
