#include "server/kestrel_service.h"

#include <utility>

#include "server/version.h"

namespace kestrel::server {

KestrelService::KestrelService(std::string listen_address)
    : listen_address_(std::move(listen_address)), start_time_(absl::Now()) {}

grpc::ServerUnaryReactor* KestrelService::GetServerInfo(
    grpc::CallbackServerContext* context, const kestrel::v1::GetServerInfoRequest* /*request*/,
    kestrel::v1::GetServerInfoResponse* response) {
  response->set_version(kVersion);
  response->set_listen_address(listen_address_);
  response->set_uptime_seconds(absl::ToDoubleSeconds(absl::Now() - start_time_));
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace kestrel::server
