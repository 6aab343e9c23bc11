// The kestrel.v1.Kestrel gRPC service. Handlers stay thin: validate, call the
// core, map the status (see server/grpc_status.h).
#ifndef KESTREL_SERVER_KESTREL_SERVICE_H_
#define KESTREL_SERVER_KESTREL_SERVICE_H_

#include <string>

#include "absl/time/time.h"
#include "kestrel/v1/kestrel.grpc.pb.h"

namespace kestrel::server {

// Thread-safe: handlers only read state that is constant after construction.
class KestrelService final : public kestrel::v1::Kestrel::CallbackService {
 public:
  // `listen_address` is reported by GetServerInfo as configured.
  explicit KestrelService(std::string listen_address);

  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* context,
                                          const kestrel::v1::GetServerInfoRequest* request,
                                          kestrel::v1::GetServerInfoResponse* response) override;

 private:
  // Constant after construction.
  const std::string listen_address_;
  const absl::Time start_time_;
};

}  // namespace kestrel::server

#endif  // KESTREL_SERVER_KESTREL_SERVICE_H_
