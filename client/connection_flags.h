// The flags that say how to reach a Kestrel server, shared by every program
// that talks to one (`kestrel`, `kestrel-bench`), so that both spell them
// the same way (docs/cli.md).
#ifndef KESTREL_CLIENT_CONNECTION_FLAGS_H_
#define KESTREL_CLIENT_CONNECTION_FLAGS_H_

#include <string>

#include "absl/status/statusor.h"
#include "client/client.h"
#include "common/flags.h"

namespace kestrel::client {

// Initial values are the defaults.
struct ConnectionFlags {
  std::string address = "localhost:50051";
  // Empty: $KESTREL_API_KEY.
  std::string api_key;
  bool tls = false;
  // PEM files: roots that sign the server's certificate (empty: the
  // system's), and the client's own chain and key for mutual TLS.
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_server_name;
};

// Declares --address, --api-key, --tls, --tls-ca-file, --tls-cert-file,
// --tls-key-file and --tls-server-name (in a "Connection" section).
void AddConnectionFlags(FlagSet& flags, ConnectionFlags* values);

// The ClientOptions the flags describe: reads the PEM files and falls back
// to $KESTREL_API_KEY. An unreadable file is an error naming its flag.
// Timeouts and retries keep ClientOptions' defaults.
absl::StatusOr<ClientOptions> ToClientOptions(const ConnectionFlags& values);

}  // namespace kestrel::client

#endif  // KESTREL_CLIENT_CONNECTION_FLAGS_H_
