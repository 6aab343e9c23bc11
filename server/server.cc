#include "server/server.h"

#include <chrono>
#include <utility>

#include <grpc/grpc.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/server_builder.h>

#include "absl/strings/str_cat.h"

namespace kestrel::server {

absl::StatusOr<std::unique_ptr<Server>> Server::Create(ServerOptions options,
                                                       grpc::Service* service) {
  if (options.listen_address.empty()) {
    return absl::InvalidArgumentError("--listen must not be empty");
  }
  if (options.max_receive_message_bytes <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max-request-bytes must be positive, got ", options.max_receive_message_bytes));
  }
  // Both are process-wide switches read by ServerBuilder::BuildAndStart.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.listen_address,
                           options.credentials ? options.credentials
                                               : grpc::InsecureServerCredentials(),
                           &port);
  builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  // gRPC sets SO_REUSEPORT by default, which lets a second server silently
  // share a port that is already serving; an address in use must be an error.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  if (service != nullptr) builder.RegisterService(service);
  if (!options.interceptors.empty()) {
    builder.experimental().SetInterceptorCreators(std::move(options.interceptors));
  }
  std::unique_ptr<grpc::Server> grpc_server = builder.BuildAndStart();
  if (grpc_server == nullptr || port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on --listen=", options.listen_address,
                                               " (invalid address, or the port is in use)"));
  }
  grpc_server->GetHealthCheckService()->SetServingStatus(false);
  return std::unique_ptr<Server>(new Server(std::move(grpc_server), port));
}

Server::~Server() {
  Shutdown(absl::ZeroDuration());
  Wait();
  if (shutdown_thread_.joinable()) shutdown_thread_.join();
}

void Server::SetServing(bool serving) {
  grpc_server_->GetHealthCheckService()->SetServingStatus(serving);
}

void Server::Shutdown(absl::Duration grace) {
  // Load balancers polling health stop routing here before calls are refused.
  SetServing(false);
  grpc_server_->Shutdown(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(grace));
}

void Server::BeginShutdown(absl::Duration grace) {
  SetServing(false);
  shutdown_thread_ = std::thread([this, grace] {
    // Closes the listener and sends GOAWAY before it starts waiting.
    grpc_server_->Shutdown(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(grace));
    shutdown_done_.Notify();
  });
}

void Server::FinishShutdown(absl::Duration grace) {
  if (!shutdown_done_.WaitForNotificationWithTimeout(grace)) {
    grpc_server_cancel_all_calls(grpc_server_->c_server());
  }
  shutdown_thread_.join();
}

void Server::Wait() { grpc_server_->Wait(); }

}  // namespace kestrel::server
