// Request validation and finish-reason names.
#include "scheduler/request.h"

#include "absl/strings/str_cat.h"

namespace kestrel::scheduler {

std::string_view FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kEos:
      return "eos";
    case FinishReason::kStopToken:
      return "stop_token";
    case FinishReason::kStopString:
      return "stop_string";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kAborted:
      return "aborted";
    case FinishReason::kDeadline:
      return "deadline";
    case FinishReason::kError:
      return "error";
  }
  return "unknown";  // unreachable: every enumerator is handled above
}

const char* FinishReasonLabel(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength:
      return "length";
    case FinishReason::kStopToken:
    case FinishReason::kStopString:
      return "stop";
    case FinishReason::kEos:
      return "eos";
    case FinishReason::kAborted:
    case FinishReason::kDeadline:
      return "cancelled";
    case FinishReason::kError:
      return "error";
  }
  return "error";  // unreachable: every enumerator is handled above
}

absl::Status ValidateRequest(const Request& request) {
  if (request.prompt_token_ids.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("request.prompt_token_ids must be non-empty (request ",
                     request.id, ")"));
  }
  for (size_t i = 0; i < request.prompt_token_ids.size(); ++i) {
    if (request.prompt_token_ids[i] < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "request.prompt_token_ids[", i, "] must be >= 0, got ",
          request.prompt_token_ids[i], " (request ", request.id, ")"));
    }
  }
  if (request.max_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("request.max_tokens must be >= 1, got ",
                     request.max_tokens, " (request ", request.id, ")"));
  }
  if (request.n < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request.n must be >= 1, got ", request.n, " (request ", request.id, ")"));
  }
  if (request.num_speculative_tokens < 0 ||
      request.num_speculative_tokens > kMaxSpeculativeTokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request.num_speculative_tokens must be in [0, ", kMaxSpeculativeTokens, "], got ",
        request.num_speculative_tokens, " (request ", request.id, ")"));
  }
  return absl::OkStatus();
}

}  // namespace kestrel::scheduler
