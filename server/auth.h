// API-key authentication for the gRPC server: keys loaded from
// --api-keys-file, required as `authorization: Bearer <key>` metadata on
// every RPC except the standard health service, compared in constant time.
// See docs/security.md for what is and is not authenticated.
#ifndef KESTREL_SERVER_AUTH_H_
#define KESTREL_SERVER_AUTH_H_

#include <grpcpp/security/auth_metadata_processor.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kestrel::server {

// The accepted API keys, kept only as SHA-256 digests. Thread-safe:
// immutable after creation.
//
// Comparing digests of fixed length with a constant-time compare, against
// every key without stopping at the first match, means the time taken
// depends neither on how many leading bytes of a guess are right nor on the
// lengths of the configured keys, nor on which key (if any) matched.
class ApiKeys {
 public:
  // Keys shorter than this are refused at load: a key is the only secret
  // between the network and the model.
  static constexpr size_t kMinKeyLength = 16;

  // Reads `path` (the value of --api-keys-file): one key per line; leading
  // and trailing whitespace (including a Windows '\r') is ignored, as are
  // blank lines and lines whose first non-blank character is '#'. Errors
  // name the file and the line, never the key: the file cannot be read, it
  // holds no key, a key is shorter than kMinKeyLength, has whitespace inside
  // (a trailing comment), has characters outside printable ASCII (gRPC
  // metadata could not carry it), or repeats an earlier line.
  static absl::StatusOr<ApiKeys> LoadFile(const std::string& path);

  // The same rules for keys already in memory; `source` names them in
  // errors (e.g. "test keys").
  static absl::StatusOr<ApiKeys> FromLines(const std::vector<std::string>& lines,
                                           const std::string& source);

  // True when `key` is one of the keys, in time independent of which key
  // matched and of the keys' contents (see the class comment).
  bool Contains(absl::string_view key) const;

  size_t size() const { return digests_.size(); }

 private:
  using Digest = std::array<uint8_t, 32>;
  explicit ApiKeys(std::vector<Digest> digests) : digests_(std::move(digests)) {}

  static Digest Sha256(absl::string_view text);

  std::vector<Digest> digests_;
};

// Enforces the API key on every call of a TLS listening port.
//
// Why an AuthMetadataProcessor and not a server interceptor: gRPC C++ server
// interceptors (grpc::experimental::ServerInterceptorFactoryInterface, 1.51)
// can observe a call but cannot fail it before the handler runs — there is
// no Hijack() on the server side (grpc/grpc#24017), so the callback handler
// would start anyway and every handler would have to re-check. The
// processor runs in the transport's auth filter before the call reaches any
// service (callback, sync or async alike), and a non-OK status from it ends
// the call with that status. It also lets us mark the `authorization` entry
// consumed, so handlers (and their logs) never see the key.
// Its limitation: gRPC runs processors only on secure (TLS) ports —
// InsecureServerCredentials()->SetAuthMetadataProcessor() aborts the
// process — so API keys require TLS (MakeListeningCredentials in tls.h
// enforces that, which is also the only safe way to send a bearer key).
//
// Not authenticated: /grpc.health.v1.Health/* (load balancers and
// orchestrators probe it without credentials). Server reflection DOES need
// a key: it is not needed to serve, and reflection clients (grpcurl,
// buf curl) send the same -H headers with their reflection requests.
//
// Thread-safe: Process() runs concurrently on gRPC's threads; the keys are
// immutable. IsBlocking() is false because the check is a hash and a few
// compares (microseconds), cheaper than a hop to gRPC's processor thread.
class ApiKeyAuthProcessor final : public grpc::AuthMetadataProcessor {
 public:
  explicit ApiKeyAuthProcessor(ApiKeys keys) : keys_(std::move(keys)) {}

  bool IsBlocking() const override { return false; }

  grpc::Status Process(const InputMetadata& auth_metadata, grpc::AuthContext* context,
                       OutputMetadata* consumed_auth_metadata,
                       OutputMetadata* response_metadata) override;

  // The decision for a call to `method` (the ":path", e.g.
  // "/kestrel.v1.Kestrel/Generate") carrying these `authorization` metadata
  // values: OK, or UNAUTHENTICATED with a message that never contains the
  // presented value.
  absl::Status Check(absl::string_view method,
                     const std::vector<absl::string_view>& authorization) const;

  // True for methods callable without a key.
  static bool IsExempt(absl::string_view method);

 private:
  const ApiKeys keys_;
};

}  // namespace kestrel::server

#endif  // KESTREL_SERVER_AUTH_H_
