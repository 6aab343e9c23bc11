// The gRPC server process core: builds the grpc::Server with Kestrel's
// services, the standard health service and server reflection, and shuts it
// down gracefully.
#ifndef KESTREL_SERVER_SERVER_H_
#define KESTREL_SERVER_SERVER_H_

#include <memory>
#include <string>

#include <grpcpp/server.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/kestrel_service.h"

namespace kestrel::server {

struct ServerOptions {
  // host:port to listen on; port 0 picks a free port (see Server::port()).
  std::string listen_address = "0.0.0.0:50051";
  // Largest request message accepted, in bytes.
  int max_receive_message_bytes = 4 << 20;
};

// A running gRPC server. Thread-safe: Shutdown() may be called from any
// thread (typically the signal watcher) while another thread is in Wait().
//
//   ASSIGN_OR_RETURN(auto server, Server::Create(options));
//   ... on SIGTERM: server->Shutdown(absl::Seconds(30));
//   server->Wait();
class Server {
 public:
  // Starts listening. Fails with a clear error when the address is invalid or
  // already in use.
  static absl::StatusOr<std::unique_ptr<Server>> Create(const ServerOptions& options);

  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The port actually bound (differs from the configured one when that was 0).
  int port() const { return port_; }

  // Marks the server NOT_SERVING on the health service, stops accepting new
  // calls, and waits up to `grace` for in-flight calls before cancelling them.
  void Shutdown(absl::Duration grace);

  // Blocks until Shutdown() has completed.
  void Wait();

 private:
  Server(std::unique_ptr<KestrelService> service, int port)
      : service_(std::move(service)), port_(port) {}

  // Constant after construction. The service must outlive grpc_server_.
  std::unique_ptr<KestrelService> service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  int port_;
};

}  // namespace kestrel::server

#endif  // KESTREL_SERVER_SERVER_H_
