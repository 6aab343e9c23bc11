// TLS credentials: startup errors that name the flag and the path, and real
// handshakes against an in-process gRPC server with certificates made by the
// openssl command line: TLS works, plaintext to the TLS port fails, mutual
// TLS refuses clients without a certificate or with one from another CA.
#include "server/tls.h"

#include <catch2/catch.hpp>
#include <fstream>
#include <memory>
#include <string>

#include "server/tls_testutil.h"

KESTREL_TSAN_SUPPRESS_GRPC_TLS_RACES()

namespace kestrel::server {
namespace {

namespace fs = std::filesystem;

std::string ErrorOf(const TlsOptions& options) {
  auto credentials = MakeServerCredentials(options);
  REQUIRE_FALSE(credentials.ok());
  return std::string(credentials.status().message());
}

TEST_CASE("MakeServerCredentials: clear errors naming the flag and the path") {
  auto pki = testing::MakeTestPkiOrSkip();
  if (!pki) return;
  const std::string cert = pki->server_cert.string();
  const std::string key = pki->server_key.string();
  const std::string missing = (pki->dir / "missing.pem").string();
  const fs::path garbage = pki->dir / "garbage.pem";
  std::ofstream(garbage) << "this is not PEM\n";

  CHECK(MakeServerCredentials({.cert_file = cert, .key_file = key}).ok());
  CHECK(MakeServerCredentials(
            {.cert_file = cert, .key_file = key, .client_ca_file = pki->ca_cert.string()})
            .ok());

  CHECK(MakeServerCredentials({.key_file = key}).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(ErrorOf({.key_file = key}).find("--tls-cert-file") != std::string::npos);
  CHECK(ErrorOf({.cert_file = cert}) == "TLS needs --tls-key-file for --tls-cert-file " + cert);

  CHECK(MakeServerCredentials({.cert_file = missing, .key_file = key}).status().code() ==
        absl::StatusCode::kNotFound);
  CHECK(ErrorOf({.cert_file = missing, .key_file = key}) ==
        "cannot read --tls-cert-file " + missing + ": No such file or directory");
  CHECK(ErrorOf({.cert_file = cert, .key_file = missing}) ==
        "cannot read --tls-key-file " + missing + ": No such file or directory");
  CHECK(ErrorOf({.cert_file = cert, .key_file = key, .client_ca_file = missing}) ==
        "cannot read --tls-client-ca-file " + missing + ": No such file or directory");
  // A directory is not readable as a file either.
  CHECK(ErrorOf({.cert_file = pki->dir.string(), .key_file = key})
            .find("--tls-cert-file " + pki->dir.string()) != std::string::npos);

  CHECK(ErrorOf({.cert_file = garbage.string(), .key_file = key}) ==
        "--tls-cert-file " + garbage.string() +
            " holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
  CHECK(ErrorOf({.cert_file = cert, .key_file = garbage.string()})
            .find("--tls-key-file " + garbage.string() + " holds no usable PEM private key") == 0);
  // A key file holding a certificate, not a key.
  CHECK(ErrorOf({.cert_file = cert, .key_file = cert})
            .find("--tls-key-file " + cert + " holds no usable PEM private key") == 0);
  CHECK(ErrorOf({.cert_file = cert, .key_file = key, .client_ca_file = garbage.string()}) ==
        "--tls-client-ca-file " + garbage.string() +
            " holds no PEM certificate (-----BEGIN CERTIFICATE-----)");

  // A passphrase-protected key is an error, not a prompt on the terminal.
  CHECK(ErrorOf({.cert_file = cert, .key_file = pki->encrypted_server_key.string()})
            .find("--tls-key-file " + pki->encrypted_server_key.string() +
                  " holds no usable PEM private key (encrypted keys are not supported)") == 0);
  // The client's key with the server's certificate.
  CHECK(ErrorOf({.cert_file = cert, .key_file = pki->client_key.string()}) ==
        "--tls-key-file " + pki->client_key.string() +
            " is not the key of the certificate in --tls-cert-file " + cert);

  CHECK(ErrorOf({.cert_file = pki->expired_cert.string(), .key_file = pki->expired_key.string()}) ==
        "the certificate in --tls-cert-file " + pki->expired_cert.string() + " has expired");
  CHECK(
      ErrorOf({.cert_file = cert, .key_file = key, .client_ca_file = pki->expired_cert.string()}) ==
      "the certificate in --tls-client-ca-file " + pki->expired_cert.string() + " has expired");
}

TEST_CASE("TLS: a client trusting the CA connects; plaintext and other CAs fail") {
  auto pki = testing::MakeTestPkiOrSkip();
  if (!pki) return;
  auto credentials = MakeServerCredentials(
      {.cert_file = pki->server_cert.string(), .key_file = pki->server_key.string()});
  REQUIRE(credentials.ok());
  auto server = testing::TestServer::Start(*credentials);

  grpc::Status status =
      testing::CallGetServerInfo(testing::TlsChannel(server->port, pki->ca_cert), std::nullopt);
  INFO(status.error_message());
  CHECK(status.ok());
  bool serving = false;
  CHECK(
      testing::CheckHealth(testing::TlsChannel(server->port, pki->ca_cert), std::nullopt, &serving)
          .ok());
  CHECK(serving);

  // Plaintext HTTP/2 to the TLS port: the server sees no TLS ClientHello.
  status = testing::CallGetServerInfo(testing::PlaintextChannel(server->port), std::nullopt);
  CHECK(status.error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK(testing::CheckHealth(testing::PlaintextChannel(server->port), std::nullopt, &serving)
            .error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK_FALSE(serving);

  // A client that trusts another CA refuses the server's certificate.
  status = testing::CallGetServerInfo(testing::TlsChannel(server->port, pki->other_ca_cert),
                                      std::nullopt);
  CHECK(status.error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK(server->service->calls == 1);
}

TEST_CASE("mutual TLS: a client certificate from the client CA is required") {
  auto pki = testing::MakeTestPkiOrSkip();
  if (!pki) return;
  auto credentials = MakeServerCredentials({.cert_file = pki->server_cert.string(),
                                            .key_file = pki->server_key.string(),
                                            .client_ca_file = pki->ca_cert.string()});
  REQUIRE(credentials.ok());
  auto server = testing::TestServer::Start(*credentials);

  // No client certificate: the handshake fails.
  grpc::Status status =
      testing::CallGetServerInfo(testing::TlsChannel(server->port, pki->ca_cert), std::nullopt);
  CHECK(status.error_code() == grpc::StatusCode::UNAVAILABLE);
  // Health is not exempt from mTLS: it is a property of the connection.
  bool serving = false;
  CHECK(
      testing::CheckHealth(testing::TlsChannel(server->port, pki->ca_cert), std::nullopt, &serving)
          .error_code() == grpc::StatusCode::UNAVAILABLE);
  // A certificate from an unrelated CA: refused.
  status =
      testing::CallGetServerInfo(testing::TlsChannel(server->port, pki->ca_cert,
                                                     pki->other_client_cert, pki->other_client_key),
                                 std::nullopt);
  CHECK(status.error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK(server->service->calls == 0);

  // The right client certificate.
  status = testing::CallGetServerInfo(
      testing::TlsChannel(server->port, pki->ca_cert, pki->client_cert, pki->client_key),
      std::nullopt);
  INFO(status.error_message());
  CHECK(status.ok());
  CHECK(server->service->calls == 1);
}

}  // namespace
}  // namespace kestrel::server
