#include "common/status_macros.h"

#include <memory>
#include <string>

#include <catch2/catch.hpp>

namespace kestrel {
namespace {

absl::StatusOr<std::unique_ptr<int>> MakeValue(bool ok) {
  if (!ok) return absl::InvalidArgumentError("value: not ok");
  return std::make_unique<int>(7);
}

absl::Status Check(bool ok, int* out) {
  ASSIGN_OR_RETURN(std::unique_ptr<int> value, MakeValue(ok));
  *out = *value;
  return absl::OkStatus();
}

absl::Status Chain(bool ok) {
  int value = 0;
  RETURN_IF_ERROR(Check(ok, &value));
  return value == 7 ? absl::OkStatus() : absl::InternalError("wrong value");
}

TEST_CASE("ASSIGN_OR_RETURN moves the value out or returns the error") {
  int value = 0;
  REQUIRE(Check(true, &value).ok());
  CHECK(value == 7);
  absl::Status error = Check(false, &value);
  CHECK(error.code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(error.message()) == "value: not ok");
}

TEST_CASE("RETURN_IF_ERROR passes errors through unchanged") {
  CHECK(Chain(true).ok());
  CHECK(Chain(false).code() == absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kestrel
