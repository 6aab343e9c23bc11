#include "server/grpc_status.h"

#include <string>

#include <catch2/catch.hpp>

namespace kestrel::server {
namespace {

TEST_CASE("ToGrpcStatus keeps the code and the message") {
  CHECK(ToGrpcStatus(absl::OkStatus()).ok());
  grpc::Status s = ToGrpcStatus(absl::InvalidArgumentError("sampling.top_p must be in (0, 1], got 1.5"));
  CHECK(s.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(s.error_message() == "sampling.top_p must be in (0, 1], got 1.5");
  CHECK(ToGrpcStatus(absl::ResourceExhaustedError("queue full")).error_code() ==
        grpc::StatusCode::RESOURCE_EXHAUSTED);
  CHECK(ToGrpcStatus(absl::UnavailableError("draining")).error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK(ToGrpcStatus(absl::DeadlineExceededError("late")).error_code() ==
        grpc::StatusCode::DEADLINE_EXCEEDED);
}

TEST_CASE("ToGrpcStatus bounds long messages without splitting a UTF-8 character") {
  std::string long_message(kMaxErrorMessageBytes - 4, 'a');
  for (int i = 0; i < 100; ++i) long_message += "\xC3\xA9";  // "é", two bytes
  grpc::Status s = ToGrpcStatus(absl::InvalidArgumentError(long_message));
  const std::string& m = s.error_message();
  CHECK(m.size() <= kMaxErrorMessageBytes);
  REQUIRE(m.size() >= 3);
  CHECK(m.substr(m.size() - 3) == "...");
  // The byte before "..." must not be a lead byte missing its continuation.
  unsigned char last = static_cast<unsigned char>(m[m.size() - 4]);
  CHECK((last < 0x80 || (last & 0xC0) == 0x80));
}

}  // namespace
}  // namespace kestrel::server
