// The one place an absl::Status becomes a grpc::Status.
#ifndef KESTREL_SERVER_GRPC_STATUS_H_
#define KESTREL_SERVER_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace kestrel::server {

// The longest error message sent to a client; longer ones are cut with "...".
// Messages may echo request fields, so they are bounded.
inline constexpr size_t kMaxErrorMessageBytes = 1024;

// Maps `status` to the gRPC status with the same code (the canonical codes
// are shared) and its message, bounded to kMaxErrorMessageBytes.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace kestrel::server

#endif  // KESTREL_SERVER_GRPC_STATUS_H_
