// MetricsExposer over a real socket: /metrics content and headers, a 404
// elsewhere, errors for bad and busy addresses, scrapes racing updates, and
// the port closed on destruction.
#include "server/metrics_exposer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/metrics.h"
#include "server/metrics_exposer_testutil.h"

namespace kestrel::server {
namespace {

using ::kestrel::server::testing::HttpGet;

TEST_CASE("serves the registry at /metrics on a picked port") {
  auto registry = std::make_shared<prometheus::Registry>();
  engine::EngineMetrics metrics(*registry, "demo");
  for (int i = 0; i < 3; ++i) {
    metrics.RecordStep(engine::StepSample{.duration = absl::Milliseconds(3), .num_sequences = 2});
  }
  auto exposer = MetricsExposer::Create("127.0.0.1:0", registry);
  REQUIRE(exposer.ok());
  const int port = (*exposer)->port();
  REQUIRE(port > 0);

  auto response = HttpGet(port, "/metrics");
  REQUIRE(response.ok());
  INFO(response->body);
  CHECK(response->status_code == 200);
  // The text exposition format (prometheus-cpp 1.0 sends no version=0.0.4
  // parameter; Prometheus reads text/plain as that format).
  CHECK(response->headers["content-type"].rfind("text/plain", 0) == 0);
  CHECK(response->body.find("# TYPE kestrel_steps_total counter\n") != std::string::npos);
  CHECK(response->body.find("kestrel_steps_total{model=\"demo\"} 3\n") != std::string::npos);
  CHECK(response->body.find("kestrel_step_batch_size_bucket{model=\"demo\",le=\"2\"} 3\n") !=
        std::string::npos);

  // Updates show up in the next scrape (nothing is cached).
  metrics.RecordStep(engine::StepSample{.duration = absl::Milliseconds(3), .num_sequences = 2});
  response = HttpGet(port, "/metrics");
  REQUIRE(response.ok());
  CHECK(response->body.find("kestrel_steps_total{model=\"demo\"} 4\n") != std::string::npos);

  // Only /metrics is served.
  response = HttpGet(port, "/");
  REQUIRE(response.ok());
  CHECK(response->status_code == 404);
}

TEST_CASE("a malformed --metrics-address is INVALID_ARGUMENT naming the flag and value") {
  auto registry = std::make_shared<prometheus::Registry>();
  for (const std::string address :
       {"", "9090", "localhost", ":9090", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:65536",
        "127.0.0.1:-1", "::1:9090", "127.0.0.1:80,127.0.0.1:81", "127.0.0.1:9090s"}) {
    auto exposer = MetricsExposer::Create(address, registry);
    INFO("address \"" << address << "\": " << exposer.status());
    REQUIRE_FALSE(exposer.ok());
    CHECK(exposer.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK(exposer.status().message().find("--metrics-address") != std::string::npos);
    CHECK(exposer.status().message().find(absl::StrCat("\"", address, "\"")) != std::string::npos);
  }
  auto null_registry = MetricsExposer::Create("127.0.0.1:0", nullptr);
  CHECK(null_registry.status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("an address in use or not local is UNAVAILABLE, not an exception") {
  auto registry = std::make_shared<prometheus::Registry>();
  // Hold a listening socket on a port, then ask for the same port.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  REQUIRE(listen(fd, 1) == 0);
  socklen_t len = sizeof(addr);
  REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  const std::string busy = absl::StrCat("127.0.0.1:", ntohs(addr.sin_port));

  auto exposer = MetricsExposer::Create(busy, registry);
  close(fd);
  INFO(exposer.status());
  REQUIRE_FALSE(exposer.ok());
  CHECK(exposer.status().code() == absl::StatusCode::kUnavailable);
  CHECK(exposer.status().message().find("--metrics-address=" + busy) != std::string::npos);

  // 192.0.2.1 (TEST-NET-1) is not an address of this machine.
  auto foreign = MetricsExposer::Create("192.0.2.1:0", registry);
  CHECK(foreign.status().code() == absl::StatusCode::kUnavailable);
  CHECK(foreign.status().message().find("--metrics-address=192.0.2.1:0") != std::string::npos);
}

TEST_CASE("scrapes run while other threads record") {
  auto registry = std::make_shared<prometheus::Registry>();
  engine::EngineMetrics metrics(*registry, "demo");
  auto exposer = MetricsExposer::Create("127.0.0.1:0", registry);
  REQUIRE(exposer.ok());
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int t = 0; t < 2; ++t) {
    writers.emplace_back([&] {
      while (!stop.load()) {
        metrics.RecordRequest(engine::RequestSample{.status = "ok",
                                                    .finish_reason = "stop",
                                                    .queue_time = absl::Milliseconds(1),
                                                    .time_to_first_token = absl::Milliseconds(5)});
        metrics.RecordLoad(engine::LoadSample{.running_requests = 1});
      }
    });
  }
  int ok_scrapes = 0;
  for (int i = 0; i < 20; ++i) {
    auto response = HttpGet((*exposer)->port(), "/metrics");
    if (response.ok() && response->status_code == 200 &&
        response->body.find("kestrel_time_to_first_token_seconds_count") != std::string::npos) {
      ++ok_scrapes;
    }
  }
  stop = true;
  for (std::thread& t : writers) t.join();
  CHECK(ok_scrapes == 20);
}

TEST_CASE("destroying the exposer closes the port") {
  auto registry = std::make_shared<prometheus::Registry>();
  auto exposer = MetricsExposer::Create("127.0.0.1:0", registry);
  REQUIRE(exposer.ok());
  const int port = (*exposer)->port();
  REQUIRE(HttpGet(port, "/metrics").ok());
  exposer->reset();
  CHECK_FALSE(HttpGet(port, "/metrics", absl::Seconds(2)).ok());
}

}  // namespace
}  // namespace kestrel::server
