#include "server/test_server.h"

#include <chrono>
#include <fstream>
#include <iostream>

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include "server/metrics_exposer_testutil.h"

namespace kestrel::server {

std::optional<TestServer> TestServer::Start(const std::vector<std::string>& args,
                                            int timeout_seconds) {
  TestServer server;
  server.dir = ::kestrel::testing::MakeTempDir("kestrel_server");
  std::vector<std::string> argv = {
      ::kestrel::testing::RunfilePath("server/kestrel-server").string(),
      "--listen=127.0.0.1:0",
      "--port-file=" + (server.dir / "port").string(),
      "--metrics-address=127.0.0.1:0",
      "--metrics-port-file=" + (server.dir / "metrics_port").string(),
  };
  argv.insert(argv.end(), args.begin(), args.end());
  server.process = ::kestrel::testing::Subprocess::Start(argv, server.dir / "server.log");
  if (!server.process) return std::nullopt;
  auto port = ::kestrel::testing::WaitForFile(server.dir / "port", *server.process,
                                              std::chrono::seconds(timeout_seconds));
  if (!port) {
    std::cerr << "kestrel-server did not start; log:\n" << server.Log() << "\n";
    return std::nullopt;
  }
  server.port = std::stoi(*port);
  std::ifstream metrics(server.dir / "metrics_port");
  metrics >> server.metrics_port;
  return server;
}

std::string TestServer::Log() const {
  std::ifstream in(dir / "server.log");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::shared_ptr<grpc::Channel> TestServer::Channel(grpc::ChannelArguments args) const {
  // Each test channel is its own connection, like separate clients.
  args.SetInt("grpc.use_local_subchannel_pool", 1);
  return grpc::CreateCustomChannel(Address(), grpc::InsecureChannelCredentials(), args);
}

std::string TestServer::ScrapeMetrics() const {
  absl::StatusOr<testing::HttpResponse> response = testing::HttpGet(metrics_port, "/metrics");
  if (!response.ok() || response->status_code != 200) return "";
  return response->body;
}

}  // namespace kestrel::server
