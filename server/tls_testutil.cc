#include "server/tls_testutil.h"

#include <grpcpp/health_check_service_interface.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <vector>

#include "grpc/health/v1/health.grpc.pb.h"
#include "testing/shared_data.h"
#include "testing/subprocess.h"

namespace kestrel::server::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr char kOpenssl[] = "/usr/bin/openssl";

// Runs openssl with `args`; FAILs the test with its output on error.
void Openssl(const fs::path& dir, std::vector<std::string> args) {
  args.insert(args.begin(), kOpenssl);
  auto process = ::kestrel::testing::Subprocess::Start(args, dir / "openssl.log");
  REQUIRE(process.has_value());
  const std::optional<int> exit = process->WaitForExit(60s);
  std::string command;
  for (const std::string& a : args) command += a + " ";
  INFO(command << "\n" << ReadFile(dir / "openssl.log"));
  REQUIRE(exit == std::optional<int>(0));
}

// A P-256 key (fast to generate) and a certificate signed by `ca` with the
// extensions in `extensions`.
void IssueCertificate(const fs::path& dir, const std::string& name, const std::string& subject,
                      const fs::path& ca_cert, const fs::path& ca_key,
                      const std::string& extensions) {
  const fs::path key = dir / (name + ".key");
  const fs::path csr = dir / (name + ".csr");
  const fs::path ext = dir / (name + ".ext");
  std::ofstream(ext) << extensions;
  Openssl(dir, {"req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", key.string(), "-out", csr.string(), "-subj", subject});
  Openssl(dir, {"x509", "-req", "-in", csr.string(), "-CA", ca_cert.string(), "-CAkey",
                ca_key.string(), "-CAcreateserial", "-days", "2", "-sha256", "-extfile",
                ext.string(), "-out", (dir / (name + ".pem")).string()});
}

void MakeCa(const fs::path& dir, const std::string& name, const std::string& subject) {
  Openssl(dir, {"req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                (dir / (name + ".key")).string(),
                "-out",
                (dir / (name + ".pem")).string(),
                "-days",
                "2",
                "-sha256",
                "-subj",
                subject,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign"});
}

// openssl's command line cannot issue a certificate that has already
// expired, so this one is made with libcrypto directly.
void MakeExpiredCertificate(const fs::path& cert_path, const fs::path& key_path) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  REQUIRE(key != nullptr);
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 7);
  X509_gmtime_adj(X509_getm_notBefore(cert), -2 * 86400);
  X509_gmtime_adj(X509_getm_notAfter(cert), -1 * 86400);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  REQUIRE(X509_sign(cert, key, EVP_sha256()) > 0);
  FILE* out = std::fopen(cert_path.c_str(), "w");
  REQUIRE(out != nullptr);
  PEM_write_X509(out, cert);
  std::fclose(out);
  out = std::fopen(key_path.c_str(), "w");
  REQUIRE(out != nullptr);
  PEM_write_PrivateKey(out, key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(out);
  X509_free(cert);
  EVP_PKEY_free(key);
}

}  // namespace

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::optional<TestPki> MakeTestPkiOrSkip() {
  if (!fs::exists(kOpenssl)) {
    const std::string problem = "/usr/bin/openssl not installed (Debian package `openssl`)";
    if (::kestrel::testing::RunningInCi()) FAIL(problem << "; under CI=true this is a failure");
    WARN("SKIPPED: " << problem);
    std::cerr << "KESTREL-SKIPPED: " << problem << "\n";
    return std::nullopt;
  }
  TestPki pki;
  pki.dir = ::kestrel::testing::MakeTempDir("pki");
  const fs::path& d = pki.dir;
  MakeCa(d, "ca", "/CN=Kestrel Test CA");
  MakeCa(d, "other_ca", "/CN=Unrelated Test CA");
  IssueCertificate(d, "server", "/CN=localhost", d / "ca.pem", d / "ca.key",
                   "basicConstraints=CA:FALSE\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=serverAuth\n"
                   "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
  const std::string client_ext =
      "basicConstraints=CA:FALSE\n"
      "keyUsage=critical,digitalSignature\n"
      "extendedKeyUsage=clientAuth\n";
  IssueCertificate(d, "client", "/CN=kestrel-test-client", d / "ca.pem", d / "ca.key", client_ext);
  IssueCertificate(d, "other_client", "/CN=intruder", d / "other_ca.pem", d / "other_ca.key",
                   client_ext);
  MakeExpiredCertificate(d / "expired.pem", d / "expired.key");
  Openssl(d, {"pkey", "-in", (d / "server.key").string(), "-aes256", "-passout", "pass:secret",
              "-out", (d / "server_encrypted.key").string()});
  pki.ca_cert = d / "ca.pem";
  pki.server_cert = d / "server.pem";
  pki.server_key = d / "server.key";
  pki.client_cert = d / "client.pem";
  pki.client_key = d / "client.key";
  pki.other_ca_cert = d / "other_ca.pem";
  pki.other_client_cert = d / "other_client.pem";
  pki.other_client_key = d / "other_client.key";
  pki.expired_cert = d / "expired.pem";
  pki.expired_key = d / "expired.key";
  pki.encrypted_server_key = d / "server_encrypted.key";
  return pki;
}

grpc::ServerUnaryReactor* TestKestrelService::GetServerInfo(
    grpc::CallbackServerContext* context, const kestrel::v1::GetServerInfoRequest* /*request*/,
    kestrel::v1::GetServerInfoResponse* response) {
  ++calls;
  if (context->client_metadata().count("authorization") > 0) saw_authorization = true;
  response->set_version("test");
  auto* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

std::unique_ptr<TestServer> TestServer::Start(
    std::shared_ptr<grpc::ServerCredentials> credentials) {
  grpc::EnableDefaultHealthCheckService(true);
  auto server = std::make_unique<TestServer>();
  server->service = std::make_unique<TestKestrelService>();
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", std::move(credentials), &server->port);
  builder.RegisterService(server->service.get());
  server->server = builder.BuildAndStart();
  REQUIRE(server->server != nullptr);
  REQUIRE(server->port > 0);
  server->server->GetHealthCheckService()->SetServingStatus(true);
  return server;
}

TestServer::~TestServer() {
  if (server != nullptr) server->Shutdown(std::chrono::system_clock::now() + 1s);
}

std::shared_ptr<grpc::Channel> TlsChannel(int port, const fs::path& ca_cert,
                                          const fs::path& client_cert, const fs::path& client_key) {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = ReadFile(ca_cert);
  if (!client_cert.empty()) {
    options.pem_cert_chain = ReadFile(client_cert);
    options.pem_private_key = ReadFile(client_key);
  }
  // A fresh channel per call site: no connection (or TLS session) is shared
  // between the checks of one test.
  grpc::ChannelArguments args;
  args.SetInt("grpc.use_local_subchannel_pool", 1);
  return grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                   grpc::SslCredentials(options), args);
}

std::shared_ptr<grpc::Channel> PlaintextChannel(int port) {
  grpc::ChannelArguments args;
  args.SetInt("grpc.use_local_subchannel_pool", 1);
  return grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                   grpc::InsecureChannelCredentials(), args);
}

grpc::Status CallGetServerInfo(const std::shared_ptr<grpc::Channel>& channel,
                               const std::optional<std::string>& authorization) {
  auto stub = kestrel::v1::Kestrel::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 5s);
  if (authorization) context.AddMetadata("authorization", *authorization);
  kestrel::v1::GetServerInfoRequest request;
  kestrel::v1::GetServerInfoResponse response;
  grpc::Status status = stub->GetServerInfo(&context, request, &response);
  if (status.ok() && response.version() != "test") {
    return grpc::Status(grpc::StatusCode::INTERNAL, "unexpected response");
  }
  return status;
}

grpc::Status CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                         const std::optional<std::string>& authorization, bool* serving) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 5s);
  if (authorization) context.AddMetadata("authorization", *authorization);
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = stub->Check(&context, request, &response);
  *serving = status.ok() && response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
  return status;
}

}  // namespace kestrel::server::testing
