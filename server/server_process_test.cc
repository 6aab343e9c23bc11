// Runs the real kestrel-server binary: health and reflection over gRPC, the
// error for an address in use, and a clean exit on SIGTERM and SIGINT.
#include <csignal>
#include <fstream>
#include <memory>
#include <set>
#include <string>

#include <catch2/catch.hpp>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "kestrel/v1/kestrel.grpc.pb.h"
#include "testing/subprocess.h"

namespace kestrel::server {
namespace {

using namespace std::chrono_literals;
using ::kestrel::testing::Subprocess;

// A kestrel-server on a free loopback port, with its log kept for failures.
struct RunningServer {
  std::filesystem::path dir;
  std::optional<Subprocess> process;
  int port = 0;

  std::string Log() const {
    std::ifstream in(dir / "server.log");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  std::shared_ptr<grpc::Channel> Channel() const {
    return grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                               grpc::InsecureChannelCredentials());
  }
};

RunningServer StartServer() {
  RunningServer server;
  server.dir = ::kestrel::testing::MakeTempDir("kestrel_server");
  server.process = Subprocess::Start(
      {::kestrel::testing::RunfilePath("server/kestrel-server").string(), "--listen=127.0.0.1:0",
       "--port_file=" + (server.dir / "port").string(), "--drain_timeout=5s"},
      server.dir / "server.log");
  REQUIRE(server.process.has_value());
  auto port = ::kestrel::testing::WaitForFile(server.dir / "port", *server.process, 30s);
  INFO("server log:\n" << server.Log());
  REQUIRE(port.has_value());
  server.port = std::stoi(*port);
  REQUIRE(server.port > 0);
  return server;
}

grpc::health::v1::HealthCheckResponse::ServingStatus CheckHealth(const RunningServer& server) {
  auto stub = grpc::health::v1::Health::NewStub(server.Channel());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 10s);
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = stub->Check(&context, request, &response);
  INFO("Check: " << status.error_message());
  REQUIRE(status.ok());
  return response.status();
}

TEST_CASE("kestrel-server reports SERVING and exits 0 on SIGTERM") {
  RunningServer server = StartServer();
  CHECK(CheckHealth(server) == grpc::health::v1::HealthCheckResponse::SERVING);

  REQUIRE(server.process->Signal(SIGTERM));
  std::optional<int> exit_status = server.process->WaitForExit(20s);
  INFO("server log:\n" << server.Log());
  REQUIRE(exit_status.has_value());
  CHECK(*exit_status == 0);
  CHECK(server.Log().find("received SIGTERM") != std::string::npos);
}

TEST_CASE("kestrel-server exits 0 on SIGINT") {
  RunningServer server = StartServer();
  REQUIRE(server.process->Signal(SIGINT));
  std::optional<int> exit_status = server.process->WaitForExit(20s);
  INFO("server log:\n" << server.Log());
  REQUIRE(exit_status.has_value());
  CHECK(*exit_status == 0);
}

TEST_CASE("kestrel-server answers GetServerInfo and lists its services by reflection") {
  RunningServer server = StartServer();

  auto kestrel_stub = kestrel::v1::Kestrel::NewStub(server.Channel());
  grpc::ClientContext info_context;
  info_context.set_deadline(std::chrono::system_clock::now() + 10s);
  kestrel::v1::GetServerInfoResponse info;
  REQUIRE(kestrel_stub->GetServerInfo(&info_context, {}, &info).ok());
  CHECK_FALSE(info.version().empty());
  CHECK(info.listen_address() == "127.0.0.1:0");

  auto reflection = grpc::reflection::v1alpha::ServerReflection::NewStub(server.Channel());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 10s);
  auto stream = reflection->ServerReflectionInfo(&context);
  grpc::reflection::v1alpha::ServerReflectionRequest request;
  request.set_list_services("");
  REQUIRE(stream->Write(request));
  stream->WritesDone();
  grpc::reflection::v1alpha::ServerReflectionResponse response;
  REQUIRE(stream->Read(&response));
  std::set<std::string> services;
  for (const auto& service : response.list_services_response().service()) {
    services.insert(service.name());
  }
  CHECK(services.count("kestrel.v1.Kestrel") == 1);
  CHECK(services.count("grpc.health.v1.Health") == 1);
  while (stream->Read(&response)) {
  }
  CHECK(stream->Finish().ok());
}

TEST_CASE("kestrel-server refuses an address already in use with a clear error") {
  RunningServer first = StartServer();
  auto dir = ::kestrel::testing::MakeTempDir("kestrel_server_busy");
  auto second = Subprocess::Start({::kestrel::testing::RunfilePath("server/kestrel-server").string(),
                                   "--listen=127.0.0.1:" + std::to_string(first.port)},
                                  dir / "server.log");
  REQUIRE(second.has_value());
  std::optional<int> exit_status = second->WaitForExit(20s);
  std::ifstream in(dir / "server.log");
  std::string log(std::istreambuf_iterator<char>(in), {});
  INFO("second server log:\n" << log);
  REQUIRE(exit_status.has_value());
  CHECK(*exit_status == 1);
  CHECK(log.find("127.0.0.1:" + std::to_string(first.port)) != std::string::npos);
}

TEST_CASE("kestrel-server rejects a bad flag value") {
  auto dir = ::kestrel::testing::MakeTempDir("kestrel_server_flags");
  auto process = Subprocess::Start({::kestrel::testing::RunfilePath("server/kestrel-server").string(),
                                    "--log_level=loud"},
                                   dir / "server.log");
  REQUIRE(process.has_value());
  std::optional<int> exit_status = process->WaitForExit(20s);
  std::ifstream in(dir / "server.log");
  std::string log(std::istreambuf_iterator<char>(in), {});
  INFO("log:\n" << log);
  REQUIRE(exit_status.has_value());
  CHECK(*exit_status == 2);
  CHECK(log.find("--log_level") != std::string::npos);
  CHECK(log.find("loud") != std::string::npos);
}

}  // namespace
}  // namespace kestrel::server
