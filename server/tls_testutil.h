// Test support for auth_test and tls_test: a throwaway PKI made with the
// openssl command line (Debian's openssl, nobody's code here) in the test's
// tmpdir, an in-process gRPC server with the standard health service and a
// small kestrel.v1.Kestrel service, and client helpers.
#ifndef KESTREL_SERVER_TLS_TESTUTIL_H_
#define KESTREL_SERVER_TLS_TESTUTIL_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "kestrel/v1/kestrel.grpc.pb.h"

// ThreadSanitizer suppressions for these in-process client+server tests,
// in the spirit of testing/tsan.supp (uninstrumented Debian libraries whose
// internal synchronisation TSan cannot see):
// - OpenSSL (libcrypto, libssl) copies gRPC's TLS buffers on gRPC's threads;
// - a status message built by gRPC core on its executor thread is handed to
//   the caller through the completion queue (uninstrumented), then copied by
//   the inlined grpcpp header code in CallOpClientRecvStatus::FinishOp; no
//   libgrpc frame shows in either stack (TSan's shadow stack skips
//   uninstrumented code), so testing/tsan.supp's entries cannot match it.
// Expands to TSan's suppression hook, which must be defined in the test
// executable itself (not a shared library) to override the runtime's weak
// default; use it once per test binary, at global scope. TSan applies these
// on top of the TSAN_OPTIONS suppressions file.
#define KESTREL_TSAN_SUPPRESS_GRPC_TLS_RACES()                                         \
  extern "C" const char* __tsan_default_suppressions() {                               \
    return "race:libcrypto.so\n"                                                       \
           "race:libssl.so\n"                                                          \
           "race:grpc::internal::CallOpClientRecvStatus::FinishOp\n";                  \
  }

namespace kestrel::server::testing {

// PEM files of the throwaway PKI, all in `dir`.
struct TestPki {
  std::filesystem::path dir;
  std::filesystem::path ca_cert;      // the CA that signs the server and client
  std::filesystem::path server_cert;  // CN=localhost, SAN DNS:localhost, IP:127.0.0.1
  std::filesystem::path server_key;
  std::filesystem::path client_cert;  // CN=kestrel-test-client, signed by ca_cert
  std::filesystem::path client_key;
  std::filesystem::path other_ca_cert;      // an unrelated CA
  std::filesystem::path other_client_cert;  // signed by other_ca_cert
  std::filesystem::path other_client_key;
  std::filesystem::path expired_cert;  // self-signed, expired yesterday
  std::filesystem::path expired_key;
  std::filesystem::path encrypted_server_key;  // server_key under a passphrase
};

// Creates the PKI with /usr/bin/openssl. Without openssl: prints
// KESTREL-SKIPPED and returns nullopt, or FAILs the test under CI=true.
// For use inside a Catch2 TEST_CASE.
std::optional<TestPki> MakeTestPkiOrSkip();

std::string ReadFile(const std::filesystem::path& path);

// kestrel.v1.Kestrel with only GetServerInfo implemented; records whether a
// call's handler could see `authorization` metadata.
class TestKestrelService final : public kestrel::v1::Kestrel::CallbackService {
 public:
  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* context,
                                          const kestrel::v1::GetServerInfoRequest* request,
                                          kestrel::v1::GetServerInfoResponse* response) override;
  std::atomic<int> calls{0};
  std::atomic<bool> saw_authorization{false};
};

// An in-process server on 127.0.0.1:<free port> with `credentials`, the
// default health service (SERVING) and TestKestrelService. Destruction shuts
// it down.
struct TestServer {
  static std::unique_ptr<TestServer> Start(std::shared_ptr<grpc::ServerCredentials> credentials);
  ~TestServer();

  std::unique_ptr<TestKestrelService> service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
};

// A TLS channel to 127.0.0.1:`port` trusting `ca_cert`, presenting a client
// certificate when both client paths are given.
std::shared_ptr<grpc::Channel> TlsChannel(int port, const std::filesystem::path& ca_cert,
                                          const std::filesystem::path& client_cert = {},
                                          const std::filesystem::path& client_key = {});
std::shared_ptr<grpc::Channel> PlaintextChannel(int port);

// GetServerInfo with `authorization` metadata when given; 5 s deadline.
grpc::Status CallGetServerInfo(const std::shared_ptr<grpc::Channel>& channel,
                               const std::optional<std::string>& authorization);

// grpc.health.v1.Health/Check for the whole server; 5 s deadline. Sets
// `serving` when the answer is SERVING.
grpc::Status CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                         const std::optional<std::string>& authorization, bool* serving);

}  // namespace kestrel::server::testing

#endif  // KESTREL_SERVER_TLS_TESTUTIL_H_
