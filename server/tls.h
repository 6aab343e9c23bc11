// TLS and mutual TLS for the gRPC listening port, from PEM files named by
// --tls-cert-file, --tls-key-file and --tls-client-ca-file. The files are
// read and checked once at startup (parsed, key matches certificate, dates
// valid) so a mistake is a clear startup error rather than failed handshakes.
// See docs/security.md.
#ifndef KESTREL_SERVER_TLS_H_
#define KESTREL_SERVER_TLS_H_

#include <grpcpp/security/auth_metadata_processor.h>
#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace kestrel::server {

struct TlsOptions {
  // PEM certificate chain the server presents (--tls-cert-file): the leaf
  // certificate first, then any intermediates. Empty: no TLS (plaintext).
  std::string cert_file{};
  // PEM private key of the leaf certificate (--tls-key-file), unencrypted.
  // Required with cert_file.
  std::string key_file{};
  // PEM CA certificate(s) that sign client certificates
  // (--tls-client-ca-file). Set: mutual TLS — a client must present a
  // certificate chaining to one of them or the handshake fails. Empty:
  // clients are not asked for a certificate. Requires cert_file.
  std::string client_ca_file{};

  bool enabled() const {
    return !cert_file.empty() || !key_file.empty() || !client_ca_file.empty();
  }
};

// TLS server credentials from `options`.
// REQUIRES: options.enabled().
// Errors name the flag and the path: a missing flag (INVALID_ARGUMENT), an
// unreadable file (NOT_FOUND), a file that is not the expected PEM, a key
// that does not match the certificate, a certificate that is expired or not
// yet valid (INVALID_ARGUMENT).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsOptions& options);

// The credentials to listen with: MakeServerCredentials(tls) when TLS is
// configured, plaintext otherwise; `auth` (may be null, e.g. an
// ApiKeyAuthProcessor from auth.h) then checks every call. `auth` without
// TLS is FAILED_PRECONDITION: gRPC runs auth processors only on TLS ports
// (and a bearer key over plaintext is readable on the network path).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeListeningCredentials(
    const TlsOptions& tls, std::shared_ptr<grpc::AuthMetadataProcessor> auth);

}  // namespace kestrel::server

#endif  // KESTREL_SERVER_TLS_H_
