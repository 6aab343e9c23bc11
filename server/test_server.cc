#include "server/test_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iostream>

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

namespace kestrel::server {

std::optional<TestServer> TestServer::Start(const std::vector<std::string>& args,
                                            int timeout_seconds) {
  TestServer server;
  server.dir = ::kestrel::testing::MakeTempDir("kestrel_server");
  std::vector<std::string> argv = {
      ::kestrel::testing::RunfilePath("server/kestrel-server").string(),
      "--listen=127.0.0.1:0",
      "--port_file=" + (server.dir / "port").string(),
      "--metrics_address=127.0.0.1:0",
      "--metrics_port_file=" + (server.dir / "metrics_port").string(),
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
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(metrics_port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval timeout{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  const std::string request = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return "";
  }
  std::string response;
  char buffer[8192];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) > 0) response.append(buffer, static_cast<size_t>(n));
  close(fd);
  const size_t body = response.find("\r\n\r\n");
  return body == std::string::npos ? "" : response.substr(body + 4);
}

}  // namespace kestrel::server
