// Runs the real kestrel-server binary on the built-in demo model: health,
// reflection, model info, startup errors, and a clean exit on SIGTERM and
// SIGINT.
#include <csignal>
#include <fstream>
#include <set>
#include <string>
#include <tuple>

#include <catch2/catch.hpp>
#include <grpcpp/client_context.h>

#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "kestrel/v1/kestrel.grpc.pb.h"
#include "server/test_server.h"

namespace kestrel::server {
namespace {

using namespace std::chrono_literals;
using ::kestrel::testing::Subprocess;

TestServer StartDemo(std::vector<std::string> args = {}) {
  std::optional<TestServer> server = TestServer::Start(args);
  REQUIRE(server.has_value());
  return std::move(*server);
}

grpc::health::v1::HealthCheckResponse::ServingStatus CheckHealth(const TestServer& server) {
  auto stub = grpc::health::v1::Health::NewStub(server.Channel());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 10s);
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = stub->Check(&context, {}, &response);
  INFO("Check: " << status.error_message());
  REQUIRE(status.ok());
  return response.status();
}

// Runs the binary with `args` and returns its exit status and log.
std::pair<int, std::string> RunToExit(const std::vector<std::string>& args) {
  auto dir = ::kestrel::testing::MakeTempDir("kestrel_server_exit");
  std::vector<std::string> argv = {::kestrel::testing::RunfilePath("server/kestrel-server").string()};
  argv.insert(argv.end(), args.begin(), args.end());
  auto process = Subprocess::Start(argv, dir / "server.log");
  REQUIRE(process.has_value());
  std::optional<int> status = process->WaitForExit(60s);
  std::ifstream in(dir / "server.log");
  std::string log(std::istreambuf_iterator<char>(in), {});
  INFO("log:\n" << log);
  REQUIRE(status.has_value());
  return {*status, log};
}

TEST_CASE("kestrel-server reports SERVING and exits 0 on SIGTERM") {
  TestServer server = StartDemo();
  CHECK(CheckHealth(server) == grpc::health::v1::HealthCheckResponse::SERVING);
  REQUIRE(server.process->Signal(SIGTERM));
  std::optional<int> exit_status = server.process->WaitForExit(30s);
  INFO("server log:\n" << server.Log());
  REQUIRE(exit_status.has_value());
  CHECK(*exit_status == 0);
  CHECK(server.Log().find("received SIGTERM") != std::string::npos);
}

TEST_CASE("kestrel-server exits 0 on SIGINT") {
  TestServer server = StartDemo();
  REQUIRE(server.process->Signal(SIGINT));
  std::optional<int> exit_status = server.process->WaitForExit(30s);
  INFO("server log:\n" << server.Log());
  REQUIRE(exit_status.has_value());
  CHECK(*exit_status == 0);
}

TEST_CASE("kestrel-server describes itself and lists its services by reflection") {
  TestServer server = StartDemo();
  auto stub = kestrel::v1::Kestrel::NewStub(server.Channel());
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 10s);
    kestrel::v1::GetServerInfoResponse info;
    REQUIRE(stub->GetServerInfo(&context, {}, &info).ok());
    CHECK_FALSE(info.version().empty());
    CHECK(info.listen_address() == "127.0.0.1:0");
    CHECK_FALSE(info.draining());
    CHECK(info.load().kv_blocks_total() > 0);
    CHECK(info.load().kv_blocks_free() == info.load().kv_blocks_total());
    CHECK(info.load().kv_block_size() == 16);
    CHECK(info.config().at("model") == "demo");
    CHECK(info.config().at("kv_cache_dtype") == "F32");  // auto, F32 weights
  }
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 10s);
    kestrel::v1::ModelInfo info;
    REQUIRE(stub->GetModelInfo(&context, {}, &info).ok());
    CHECK(info.name() == "demo");
    CHECK(info.architecture() == "llama");
    CHECK(info.vocab_size() > 256);
    CHECK(info.context_length() > 0);
    CHECK(info.num_parameters() > 0);
  }

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
  TestServer first = StartDemo();
  auto [status, log] = RunToExit({"--listen=127.0.0.1:" + std::to_string(first.port),
                                  "--metrics_address="});
  CHECK(status == 1);
  CHECK(log.find("127.0.0.1:" + std::to_string(first.port)) != std::string::npos);
}

TEST_CASE("kestrel-server rejects bad flags and missing models by name") {
  {
    auto [status, log] = RunToExit({"--log_level=loud"});
    CHECK(status == 2);
    CHECK(log.find("--log_level") != std::string::npos);
    CHECK(log.find("loud") != std::string::npos);
  }
  {
    auto [status, log] = RunToExit({"--model=/nonexistent/model", "--metrics_address="});
    CHECK(status == 1);
    CHECK(log.find("/nonexistent/model") != std::string::npos);
  }
  {
    auto [status, log] = RunToExit({"--scheduling_policy=random", "--metrics_address="});
    CHECK(status == 2);
    CHECK(log.find("--scheduling_policy") != std::string::npos);
  }
  {
    auto [status, log] = RunToExit({"--kv_cache_dtype=fp8", "--metrics_address="});
    CHECK(status == 2);
    CHECK(log.find("--kv_cache_dtype must be auto, f32 or bf16, got \"fp8\"") !=
          std::string::npos);
  }
}

TEST_CASE("kestrel-server with a BF16 KV cache holds twice the blocks and still generates") {
  auto blocks_and_text = [](const std::vector<std::string>& args) {
    TestServer server = StartDemo(args);
    auto stub = kestrel::v1::Kestrel::NewStub(server.Channel());
    grpc::ClientContext info_context;
    info_context.set_deadline(std::chrono::system_clock::now() + 10s);
    kestrel::v1::GetServerInfoResponse info;
    REQUIRE(stub->GetServerInfo(&info_context, {}, &info).ok());
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 30s);
    kestrel::v1::GenerateRequest request;
    request.set_text("hello");
    request.mutable_stopping()->set_max_tokens(8);
    request.mutable_stopping()->set_ignore_eos(true);
    kestrel::v1::CompleteResponse response;
    REQUIRE(stub->Complete(&context, request, &response).ok());
    REQUIRE(response.completions_size() == 1);
    return std::make_tuple(info.load().kv_blocks_total(), info.config().at("kv_cache_dtype"),
                           response.completions(0).token_ids_size());
  };
  const auto [f32_blocks, f32_name, f32_tokens] = blocks_and_text({"--kv_cache_mib=8"});
  const auto [bf16_blocks, bf16_name, bf16_tokens] =
      blocks_and_text({"--kv_cache_mib=8", "--kv_cache_dtype=bf16"});
  CHECK(f32_name == "F32");
  CHECK(bf16_name == "BF16");
  CHECK(bf16_blocks == 2 * f32_blocks);
  CHECK(f32_tokens == 8);
  CHECK(bf16_tokens == 8);
}

}  // namespace
}  // namespace kestrel::server
