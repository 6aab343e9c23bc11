// The C++ client library for Kestrel's gRPC API (proto/kestrel/v1): one
// shared channel, API-key metadata, per-call deadlines, retries of idempotent
// calls, and blocking or streaming generation with cancel.
#ifndef KESTREL_CLIENT_CLIENT_H_
#define KESTREL_CLIENT_CLIENT_H_

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "kestrel/v1/kestrel.grpc.pb.h"

namespace kestrel::client {

struct ClientOptions {
  // host:port of the server (any gRPC target: dns:///, unix:, ipv4:).
  std::string address = "localhost:50051";

  // TLS. Off by default (plain-text HTTP/2). When on, an empty root bundle
  // means the system's roots; cert chain and key (PEM contents, not paths)
  // are for servers that require client certificates.
  bool use_tls = false;
  std::string tls_root_certs_pem;
  std::string tls_cert_chain_pem;
  std::string tls_private_key_pem;
  // Overrides the name checked against the server certificate (tests,
  // servers reached by IP). Empty: the host part of `address`.
  std::string tls_server_name;

  // Sent as `authorization: Bearer <api_key>` on every Kestrel call when not
  // empty. Never logged.
  std::string api_key;

  // Deadline of every call that does not set its own (CallOptions::timeout),
  // retries included. absl::InfiniteDuration() means none.
  absl::Duration default_timeout = absl::Seconds(60);

  // Retries of idempotent calls (Tokenize, Detokenize, GetModelInfo,
  // GetServerInfo, Health, Abort) answered UNAVAILABLE: at most this many
  // attempts in all, with exponential backoff and full jitter, all within
  // the call's deadline. Generate and Complete are never retried: a retry
  // could run the same generation twice.
  int max_attempts = 3;
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(2);
  double backoff_multiplier = 2.0;

  // gRPC wait-for-ready: calls wait for the connection (until their
  // deadline) instead of failing UNAVAILABLE at once while it is down.
  bool wait_for_ready = false;
};

// Per-call settings.
struct CallOptions {
  // This call's deadline, from now; unset: ClientOptions::default_timeout.
  std::optional<absl::Duration> timeout;
};

// Called for each event of a Generate stream, in order, on a gRPC thread.
// Return false to cancel the call (the stream then ends CANCELLED).
using EventCallback = std::function<bool(const kestrel::v1::GenerateResponse&)>;
// Called exactly once when the stream has ended, with its final status.
using DoneCallback = std::function<void(const absl::Status&)>;

// A Generate call in flight. Thread-safe. Destroying it cancels the call if
// it is still running and waits for its callbacks to finish.
class GenerateStream {
 public:
  class Reactor;  // Internal (client.cc).

  explicit GenerateStream(std::shared_ptr<Reactor> reactor);
  GenerateStream(const GenerateStream&) = delete;
  GenerateStream& operator=(const GenerateStream&) = delete;
  ~GenerateStream();

  // Asks the server to stop; the stream ends soon with CANCELLED (unless it
  // had already ended). An event callback already running may still
  // finish; none starts afterwards. Safe from any thread, callbacks included.
  void Cancel();

  // Blocks until the stream has ended and the done callback has returned;
  // returns the final status.
  // REQUIRES: not called from this stream's own callbacks.
  absl::Status Wait();

  // True once the stream has ended and its done callback has returned.
  bool Done() const;

 private:
  std::shared_ptr<Reactor> reactor_;
};

// A client of one Kestrel server. Thread-safe: any number of threads may
// issue calls at once; they share one channel (one HTTP/2 connection).
//
//   ASSIGN_OR_RETURN(auto client, Client::Create({.address = "host:50051"}));
//   RETURN_IF_ERROR(client->Generate(request, [](const auto& event) {
//     std::cout << event.chunk().text() << std::flush;
//     return true;
//   }));
class Client {
 public:
  // Fails on invalid options (empty address, max_attempts < 1, TLS key
  // without certificate). Does not connect: the first call does.
  static absl::StatusOr<std::unique_ptr<Client>> Create(const ClientOptions& options);

  // Streams a generation: `on_event` per event, then `on_done` once. Returns
  // at once. Not retried.
  std::unique_ptr<GenerateStream> StartGenerate(const kestrel::v1::GenerateRequest& request,
                                                EventCallback on_event,
                                                DoneCallback on_done = nullptr,
                                                const CallOptions& call = {});

  // StartGenerate + Wait: blocks until the stream ends.
  absl::Status Generate(const kestrel::v1::GenerateRequest& request, EventCallback on_event,
                        const CallOptions& call = {});

  // The whole result at once. Not retried.
  absl::StatusOr<kestrel::v1::CompleteResponse> Complete(
      const kestrel::v1::GenerateRequest& request, const CallOptions& call = {});

  absl::StatusOr<kestrel::v1::TokenizeResponse> Tokenize(
      const kestrel::v1::TokenizeRequest& request, const CallOptions& call = {});
  absl::StatusOr<kestrel::v1::DetokenizeResponse> Detokenize(
      const kestrel::v1::DetokenizeRequest& request, const CallOptions& call = {});
  absl::StatusOr<kestrel::v1::ModelInfo> GetModelInfo(const CallOptions& call = {});
  absl::StatusOr<kestrel::v1::GetServerInfoResponse> GetServerInfo(const CallOptions& call = {});
  // Retried like the other idempotent calls, so `found` may be false when
  // a first attempt aborted the request but its answer was lost.
  absl::StatusOr<kestrel::v1::AbortResponse> Abort(const std::string& request_id,
                                                   const CallOptions& call = {});

  // The standard grpc.health.v1 check for `service` ("" = the whole
  // server). No API key is sent: health stays open on authenticated servers.
  absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> Health(
      const std::string& service = "", const CallOptions& call = {});

  const ClientOptions& options() const { return options_; }

 private:
  Client(const ClientOptions& options, std::shared_ptr<grpc::Channel> channel);

  // A context with the deadline `deadline` and, when `with_key`, the API key.
  std::unique_ptr<grpc::ClientContext> NewContext(absl::Time deadline, bool with_key) const;
  absl::Time Deadline(const CallOptions& call) const;

  // Runs `attempt` (one RPC on a fresh context) until it succeeds, fails
  // with anything but UNAVAILABLE, or attempts or the deadline run out.
  absl::Status CallWithRetries(
      const char* method, const CallOptions& call, bool with_key,
      const std::function<grpc::Status(grpc::ClientContext*)>& attempt) const;

  // Constant after construction.
  const ClientOptions options_;
  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<kestrel::v1::Kestrel::Stub> stub_;
  const std::unique_ptr<grpc::health::v1::Health::Stub> health_stub_;
};

// grpc::Status -> absl::Status (the codes are the same numbers), with the
// method and address in the message so that a user sees what failed.
absl::Status FromGrpcStatus(const grpc::Status& status, const std::string& method,
                            const std::string& address);

}  // namespace kestrel::client

#endif  // KESTREL_CLIENT_CLIENT_H_
