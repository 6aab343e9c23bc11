// Runs a real kestrel-server binary for tests: on free loopback ports, with
// its log kept for failure messages, stopped (SIGKILL) when the test ends.
#ifndef KESTREL_SERVER_TEST_SERVER_H_
#define KESTREL_SERVER_TEST_SERVER_H_

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/channel.h>
#include <grpcpp/support/channel_arguments.h>

#include "testing/subprocess.h"

namespace kestrel::server {

struct TestServer {
  std::filesystem::path dir;
  std::optional<::kestrel::testing::Subprocess> process;
  int port = 0;
  int metrics_port = 0;

  // Starts kestrel-server with `args` plus --listen, --port-file,
  // --metrics-address and --metrics-port-file on loopback. Returns nullopt
  // (and prints the log) when it does not come up within `timeout_seconds`.
  static std::optional<TestServer> Start(const std::vector<std::string>& args,
                                         int timeout_seconds = 60);

  std::string Log() const;
  std::string Address() const { return "127.0.0.1:" + std::to_string(port); }
  // A new connection to the server; `args` adds channel arguments.
  std::shared_ptr<grpc::Channel> Channel(grpc::ChannelArguments args = {}) const;
  // GET /metrics; empty on failure.
  std::string ScrapeMetrics() const;
};

}  // namespace kestrel::server

#endif  // KESTREL_SERVER_TEST_SERVER_H_
