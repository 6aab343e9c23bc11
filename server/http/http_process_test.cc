// The kestrel-server binary with --http-listen on the random built-in model
// (its context holds the long streams below): the port
// file and startup log, a stream that runs through a SIGTERM drain while
// /health turns 503 and new requests are refused, then exit 0; a bad
// --http-listen is a startup error.
#include <csignal>
#include <fstream>
#include <thread>

#include <catch2/catch.hpp>

#include "server/http/http_test_client.h"
#include "server/test_server.h"
#include "testing/subprocess.h"

namespace kestrel::server::http {
namespace {

using namespace std::chrono_literals;
using testing::Fetch;
using testing::FetchOptions;
using testing::FetchResult;

FetchResult Get(const std::string& url) {
  FetchOptions options;
  options.method = "GET";
  options.timeout_ms = 5000;
  return Fetch(url, options);
}

FetchResult Post(const std::string& url, const std::string& body) {
  FetchOptions options;
  options.body = body;
  options.timeout_ms = 5000;
  return Fetch(url, options);
}

TEST_CASE("kestrel-server --http-listen drains HTTP streams on SIGTERM") {
  const auto dir = ::kestrel::testing::MakeTempDir("http_process");
  const auto port_file = dir / "http_port";
  std::optional<TestServer> server = TestServer::Start(
      {"--model=random", "--http-listen=127.0.0.1:0", "--http-port-file=" + port_file.string(),
       "--drain-timeout=60s"});
  REQUIRE(server.has_value());
  int port = 0;
  std::ifstream(port_file) >> port;
  REQUIRE(port > 0);
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  CHECK(server->Log().find("OpenAI-compatible HTTP API on http://127.0.0.1:0 (port " +
                           std::to_string(port) + ")") != std::string::npos);
  CHECK(Get(base + "/health").status == 200);

  // A long stream, started before the signal.
  FetchResult stream;
  std::thread client([&] {
    FetchOptions options;
    options.body = R"({"prompt": "x", "max_tokens": 1000, "n": 16, "ignore_eos": true, "stream": true,
                       "temperature": 0})";
    stream = Fetch(base + "/v1/completions", options);
  });
  REQUIRE(testing::WaitFor(
      [&] {
        return server->ScrapeMetrics().find("kestrel_requests_running{model=\"random\"} 1") !=
               std::string::npos;
      },
      30));
  REQUIRE(server->process->Signal(SIGTERM));
  REQUIRE(testing::WaitFor(
      [&] { return server->Log().find("received SIGTERM") != std::string::npos; }, 30));
  FetchResult health = Get(base + "/health");
  FetchResult refused = Post(base + "/v1/completions", R"({"prompt": "x"})");
  client.join();
  std::optional<int> exit_status = server->process->WaitForExit(60s);
  INFO("server log:\n" << server->Log());
  // While the stream runs the listener stays open and answers 503.
  CHECK(health.status == 503);
  CHECK(refused.status == 503);
  CHECK(stream.status == 200);
  CHECK(stream.done);
  REQUIRE(exit_status.has_value());
  CHECK(*exit_status == 0);
}

TEST_CASE("a malformed --http-listen is a startup error naming the flag") {
  const auto dir = ::kestrel::testing::MakeTempDir("http_process_bad");
  auto process = ::kestrel::testing::Subprocess::Start(
      {::kestrel::testing::RunfilePath("server/kestrel-server").string(), "--listen=127.0.0.1:0",
       "--metrics-address=", "--http-listen=localhost:http"},
      dir / "log");
  REQUIRE(process.has_value());
  std::optional<int> status = process->WaitForExit(60s);
  std::ifstream in(dir / "log");
  std::string log(std::istreambuf_iterator<char>(in), {});
  INFO(log);
  REQUIRE(status.has_value());
  CHECK(*status == 1);
  CHECK(log.find("--http-listen must be host:port") != std::string::npos);
}

}  // namespace
}  // namespace kestrel::server::http
