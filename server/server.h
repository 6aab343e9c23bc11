// The gRPC server: Kestrel's service, the standard health service and
// server reflection on one port, with optional TLS and interceptors (API
// keys), and a graceful shutdown.
#ifndef KESTREL_SERVER_SERVER_H_
#define KESTREL_SERVER_SERVER_H_

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/support/server_interceptor.h>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace kestrel::server {

struct ServerOptions {
  // host:port to listen on; port 0 picks a free port (see Server::port()).
  std::string listen_address = "0.0.0.0:50051";
  // Largest request message accepted, in bytes.
  int max_receive_message_bytes = 4 << 20;
  // TLS (or mutual TLS) credentials; null serves plaintext.
  std::shared_ptr<grpc::ServerCredentials> credentials;
  // Run on every call, in order (e.g. API-key checks).
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
};

// A running gRPC server. Health starts NOT_SERVING: call SetServing(true)
// once the model is loaded and warmed up. Thread-safe: SetServing and
// Shutdown may be called from any thread while another is in Wait();
// BeginShutdown and FinishShutdown from one thread, in that order, once.
class Server {
 public:
  // Starts listening. `service` (not owned) must outlive the server. Fails
  // with a clear error when the address is invalid or already in use.
  static absl::StatusOr<std::unique_ptr<Server>> Create(ServerOptions options,
                                                        grpc::Service* service);

  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The port actually bound (differs from the configured one when that was 0).
  int port() const { return port_; }

  // What grpc.health.v1 reports for the whole server.
  void SetServing(bool serving);

  // Stops accepting calls and waits up to `grace` for calls in flight before
  // cancelling them; health turns NOT_SERVING first.
  void Shutdown(absl::Duration grace);

  // Starts a graceful shutdown and returns at once: health turns
  // NOT_SERVING, the listening socket closes and connected clients are told
  // (HTTP/2 GOAWAY) to send new calls elsewhere, so a proxy or load balancer
  // moves new requests to other replicas right away (a refused connection is
  // safe to retry; an UNAVAILABLE answer is not). Calls in flight go on for
  // up to `grace`.
  void BeginShutdown(absl::Duration grace);

  // REQUIRES: BeginShutdown() was called.
  // Waits up to `grace` for the calls still in flight, cancels the rest
  // (health Watch streams never end by themselves) and returns once the
  // shutdown is complete.
  void FinishShutdown(absl::Duration grace);

  // Blocks until Shutdown() has completed.
  void Wait();

 private:
  Server(std::unique_ptr<grpc::Server> server, int port)
      : grpc_server_(std::move(server)), port_(port) {}

  const std::unique_ptr<grpc::Server> grpc_server_;
  const int port_;

  // Set by BeginShutdown: runs grpc::Server::Shutdown, which blocks until
  // every call has ended; `shutdown_done_` is notified when it returns.
  std::thread shutdown_thread_;
  absl::Notification shutdown_done_;
};

}  // namespace kestrel::server

#endif  // KESTREL_SERVER_SERVER_H_
