// kestrel-server with TLS and API keys, as an operator would run it:
// requests without a key or with a wrong one are UNAUTHENTICATED, the right
// key works, health needs no key, and plaintext to the TLS port fails.
#include <fstream>

#include <catch2/catch.hpp>
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include "grpc/health/v1/health.grpc.pb.h"
#include "kestrel/v1/kestrel.grpc.pb.h"
#include "server/test_server.h"
#include "server/tls_testutil.h"

namespace kestrel::server {
namespace {

using namespace std::chrono_literals;

constexpr char kKey[] = "kestrel-test-key-0123456789abcdef";

std::shared_ptr<grpc::Channel> TlsChannel(const TestServer& server, const testing::TestPki& pki) {
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = testing::ReadFile(pki.ca_cert);
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("localhost");
  return grpc::CreateCustomChannel(server.Address(), grpc::SslCredentials(ssl), args);
}

grpc::Status Generate(const std::shared_ptr<grpc::Channel>& channel, const char* key) {
  auto stub = kestrel::v1::Kestrel::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 20s);
  if (key != nullptr) context.AddMetadata("authorization", std::string("Bearer ") + key);
  kestrel::v1::GenerateRequest request;
  request.mutable_token_ids()->add_ids(5);
  request.mutable_stopping()->set_max_tokens(3);
  auto reader = stub->Generate(&context, request);
  kestrel::v1::GenerateResponse response;
  while (reader->Read(&response)) {
  }
  return reader->Finish();
}

TEST_CASE("TLS and API keys guard every RPC but health") {
  std::optional<testing::TestPki> pki = testing::MakeTestPkiOrSkip();
  if (!pki) return;
  const std::filesystem::path keys = pki->dir / "api_keys";
  std::ofstream(keys) << "# operator keys\n" << kKey << "\n";
  std::optional<TestServer> server = TestServer::Start(
      {"--tls-cert-file=" + pki->server_cert.string(), "--tls-key-file=" + pki->server_key.string(),
       "--api-keys-file=" + keys.string()});
  REQUIRE(server.has_value());
  auto channel = TlsChannel(*server, *pki);

  grpc::Status missing = Generate(channel, nullptr);
  CHECK(missing.error_code() == grpc::StatusCode::UNAUTHENTICATED);
  grpc::Status wrong = Generate(channel, "kestrel-wrong-key-0123456789abcdef");
  CHECK(wrong.error_code() == grpc::StatusCode::UNAUTHENTICATED);
  CHECK(wrong.error_message().find("wrong-key") == std::string::npos);  // never echoed
  grpc::Status right = Generate(channel, kKey);
  INFO(right.error_message());
  CHECK(right.ok());

  auto health = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext health_context;
  health_context.set_deadline(std::chrono::system_clock::now() + 10s);
  grpc::health::v1::HealthCheckResponse status;
  REQUIRE(health->Check(&health_context, {}, &status).ok());
  CHECK(status.status() == grpc::health::v1::HealthCheckResponse::SERVING);

  // Plaintext to the TLS port fails.
  grpc::Status plain = Generate(server->Channel(), kKey);
  CHECK_FALSE(plain.ok());
  CHECK(plain.error_code() == grpc::StatusCode::UNAVAILABLE);

  // The server log never shows the key.
  CHECK(server->Log().find(kKey) == std::string::npos);
}

TEST_CASE("API keys without TLS are refused at startup") {
  auto dir = ::kestrel::testing::MakeTempDir("kestrel_keys");
  std::ofstream(dir / "keys") << kKey << "\n";
  std::optional<TestServer> server =
      TestServer::Start({"--api-keys-file=" + (dir / "keys").string()}, 20);
  CHECK_FALSE(server.has_value());
}

}  // namespace
}  // namespace kestrel::server
