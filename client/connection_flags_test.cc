// Tests of the shared connection flags: spelling, files read into the
// options, $KESTREL_API_KEY, and errors that name the flag.
#include "client/connection_flags.h"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>

#include "testing/subprocess.h"

namespace kestrel::client {
namespace {

TEST_CASE("Connection flags fill ClientOptions, reading the PEM files") {
  const auto dir = kestrel::testing::MakeTempDir("connection_flags");
  std::ofstream(dir / "ca.pem") << "CA";
  std::ofstream(dir / "cert.pem") << "CERT";
  std::ofstream(dir / "key.pem") << "KEY";
  ConnectionFlags values;
  FlagSet flags("tool", "", "");
  AddConnectionFlags(flags, &values);
  ParsedArgs args = flags.Parse({"--address=h:1", "--api-key", "k", "--tls",
                                 "--tls-ca-file=" + (dir / "ca.pem").string(),
                                 "--tls_cert_file=" + (dir / "cert.pem").string(),
                                 "--tls-key-file=" + (dir / "key.pem").string(),
                                 "--tls-server-name=example.com"});
  REQUIRE_FALSE(args.exit);
  absl::StatusOr<ClientOptions> options = ToClientOptions(values);
  REQUIRE(options.ok());
  CHECK(options->address == "h:1");
  CHECK(options->api_key == "k");
  CHECK(options->use_tls);
  CHECK(options->tls_root_certs_pem == "CA");
  CHECK(options->tls_cert_chain_pem == "CERT");
  CHECK(options->tls_private_key_pem == "KEY");
  CHECK(options->tls_server_name == "example.com");
}

TEST_CASE("Without --api-key the key comes from $KESTREL_API_KEY") {
  ::setenv("KESTREL_API_KEY", "from-env", 1);
  absl::StatusOr<ClientOptions> options = ToClientOptions({});
  ::unsetenv("KESTREL_API_KEY");
  REQUIRE(options.ok());
  CHECK(options->api_key == "from-env");
  CHECK(options->address == "localhost:50051");
  CHECK_FALSE(options->use_tls);
}

TEST_CASE("An unreadable PEM file is an error naming its flag") {
  ConnectionFlags values;
  values.tls_key_file = "/no/such/key.pem";
  absl::StatusOr<ClientOptions> options = ToClientOptions(values);
  REQUIRE_FALSE(options.ok());
  CHECK(options.status().message().rfind("--tls-key-file: cannot open /no/such/key.pem", 0) == 0);
}

}  // namespace
}  // namespace kestrel::client
