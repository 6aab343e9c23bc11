// The plain data a caller hands the scheduler (Request) and gets back from it
// (finish reasons, sampled-token reports), plus the validation that does not
// depend on pool size. See docs/scheduler.md for the lifecycle.
#ifndef KESTREL_SCHEDULER_REQUEST_H_
#define KESTREL_SCHEDULER_REQUEST_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace kestrel::scheduler {

using TokenId = int32_t;
// Chosen by the caller; unique among live requests.
using RequestId = uint64_t;
// Chosen by the scheduler; one per sample of a request (n > 1 forks more).
using SequenceId = uint64_t;

// Most draft tokens one decode step may verify (Request::num_speculative_tokens).
inline constexpr int kMaxSpeculativeTokens = 16;

// One generation request, already tokenized. Plain data, copyable.
struct Request {
  RequestId id = 0;
  // The prompt; must be non-empty.
  std::vector<TokenId> prompt_token_ids;
  // Upper bound on generated tokens per sample; >= 1. Together with the prompt
  // it must fit the KV pool, otherwise AddRequest rejects the request.
  int max_tokens = 16;
  // Number of samples of this prompt. Samples share the prompt's KV blocks
  // (copy-on-write) and fork when the prompt's prefill samples.
  int n = 1;
  // Higher runs first under SchedulingPolicy::kPriority; ignored under kFcfs.
  int priority = 0;
  // Ends a sample when generated, unless ignore_eos. Negative: no EOS token.
  TokenId eos_token_id = -1;
  bool ignore_eos = false;
  // Extra token ids that end a sample when generated.
  std::vector<TokenId> stop_token_ids;
  // Tenant-specific salt mixed into the prefix-cache hash chain so tenants
  // never share cached blocks. Empty: shared cache.
  std::string cache_salt;
  // Speculative decoding: each decode step verifies up to this many draft
  // tokens proposed by prompt lookup (Scheduler::Options::ngram); 0 off.
  // In [0, kMaxSpeculativeTokens].
  int num_speculative_tokens = 0;
  // The request is ended with FinishReason::kDeadline at the first Step whose
  // `now` is at or after this time. The scheduler never reads a clock.
  absl::Time deadline = absl::InfiniteFuture();
};

// Why a sample ended: the one enum of the scheduler, the engine and the API
// (engine events carry it; the API groups it, see FinishReasonLabel).
enum class FinishReason {
  kEos,         // generated the request's EOS token
  kStopToken,   // generated one of stop_token_ids
  kStopString,  // the engine saw a stop string in the detokenized text
  kLength,      // generated max_tokens
  kAborted,     // the caller aborted it (cancel, disconnect, drain, a failed step)
  kDeadline,    // Step was called at or after the request's deadline
  kError,       // refused before it started (the engine; never the scheduler)
};

// Stable lower-case name of the exact reason, for logs ("eos",
// "stop_token", "deadline", ...).
std::string_view FinishReasonName(FinishReason reason);

// The API's coarser grouping, for clients and metrics labels: "length",
// "stop" (stop token or string), "eos", "cancelled" (aborted or deadline),
// "error".
const char* FinishReasonLabel(FinishReason reason);

// One token the sampler picked for a sequence the last Step asked to sample.
struct SampledToken {
  SequenceId seq_id = 0;
  TokenId token_id = 0;
  // Set by the engine when the text including this token ends in one of the
  // request's stop strings; the scheduler never sees text.
  bool stop_string_matched = false;
};

// Reported once per sequence when it leaves the scheduler.
struct FinishedSequence {
  RequestId request_id = 0;
  SequenceId seq_id = 0;
  int sample_index = 0;
  FinishReason reason = FinishReason::kLength;
  int num_output_tokens = 0;
};

// Checks the fields that are wrong regardless of scheduler configuration.
// Errors are INVALID_ARGUMENT and name the field and value.
absl::Status ValidateRequest(const Request& request);

}  // namespace kestrel::scheduler

#endif  // KESTREL_SCHEDULER_REQUEST_H_
