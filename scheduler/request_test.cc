// Tests for request validation and finish-reason names.
#include "scheduler/request.h"

#include <catch2/catch.hpp>

namespace kestrel::scheduler {
namespace {

Request ValidRequest() {
  Request r;
  r.id = 7;
  r.prompt_token_ids = {1, 2, 3};
  return r;
}

TEST_CASE("ValidateRequest accepts a plain request") {
  REQUIRE(ValidateRequest(ValidRequest()).ok());
}

TEST_CASE("ValidateRequest names the field and value") {
  Request r = ValidRequest();
  r.prompt_token_ids.clear();
  absl::Status s = ValidateRequest(r);
  REQUIRE(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(s.message()),
             Catch::Contains("request.prompt_token_ids"));

  r = ValidRequest();
  r.max_tokens = 0;
  s = ValidateRequest(r);
  REQUIRE(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(s.message()),
             Catch::Contains("request.max_tokens must be >= 1, got 0"));

  r = ValidRequest();
  r.n = -2;
  s = ValidateRequest(r);
  CHECK_THAT(std::string(s.message()), Catch::Contains("request.n must be >= 1, got -2"));

  r = ValidRequest();
  r.prompt_token_ids[1] = -5;
  s = ValidateRequest(r);
  CHECK_THAT(std::string(s.message()),
             Catch::Contains("request.prompt_token_ids[1] must be >= 0, got -5"));
}

TEST_CASE("FinishReasonName is stable") {
  CHECK(FinishReasonName(FinishReason::kEos) == "eos");
  CHECK(FinishReasonName(FinishReason::kStopToken) == "stop_token");
  CHECK(FinishReasonName(FinishReason::kStopString) == "stop_string");
  CHECK(FinishReasonName(FinishReason::kLength) == "length");
  CHECK(FinishReasonName(FinishReason::kAborted) == "aborted");
  CHECK(FinishReasonName(FinishReason::kDeadline) == "deadline");
}

}  // namespace
}  // namespace kestrel::scheduler
