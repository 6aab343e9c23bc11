#include "client/connection_flags.h"

#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"

namespace kestrel::client {
namespace {

// The file's contents, or "" for no file; errors name the flag.
absl::StatusOr<std::string> ReadPem(const char* flag, const std::string& path) {
  if (path.empty()) return std::string();
  absl::StatusOr<std::string> pem = ReadFileToString(path);
  if (!pem.ok()) {
    return absl::Status(pem.status().code(), absl::StrCat(flag, ": ", pem.status().message()));
  }
  return pem;
}

}  // namespace

void AddConnectionFlags(FlagSet& flags, ConnectionFlags* values) {
  flags.Section("Connection");
  flags.Add("address", &values->address, "HOST:PORT", "Kestrel server address (a gRPC target)");
  flags.Add("api-key", &values->api_key, "KEY", "Sent as 'authorization: Bearer KEY'")
      .DefaultText("$KESTREL_API_KEY");
  flags.Add("tls", &values->tls, "Connect with TLS");
  flags.Add("tls-ca-file", &values->tls_ca_file, "PEM",
            "Root certificates for the server's certificate (default: the system's)");
  flags.Add("tls-cert-file", &values->tls_cert_file, "PEM",
            "Client certificate chain (mutual TLS)");
  flags.Add("tls-key-file", &values->tls_key_file, "PEM", "Client private key (mutual TLS)");
  flags.Add("tls-server-name", &values->tls_server_name, "NAME",
            "Name to check the server certificate against (default: the host of --address)");
}

absl::StatusOr<ClientOptions> ToClientOptions(const ConnectionFlags& values) {
  ClientOptions options;
  options.address = values.address;
  options.api_key = values.api_key;
  if (options.api_key.empty()) {
    if (const char* key = std::getenv("KESTREL_API_KEY")) options.api_key = key;
  }
  options.use_tls = values.tls;
  absl::StatusOr<std::string> pem = ReadPem("--tls-ca-file", values.tls_ca_file);
  if (!pem.ok()) return pem.status();
  options.tls_root_certs_pem = *std::move(pem);
  pem = ReadPem("--tls-cert-file", values.tls_cert_file);
  if (!pem.ok()) return pem.status();
  options.tls_cert_chain_pem = *std::move(pem);
  pem = ReadPem("--tls-key-file", values.tls_key_file);
  if (!pem.ok()) return pem.status();
  options.tls_private_key_pem = *std::move(pem);
  options.tls_server_name = values.tls_server_name;
  return options;
}

}  // namespace kestrel::client
