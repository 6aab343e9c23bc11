// What a client asks the engine for (GenerateParams) and what the engine
// sends back to it (events through a RequestSink). Transport-neutral: the
// gRPC layer translates kestrel.v1 messages to and from these.
#ifndef KESTREL_ENGINE_REQUEST_H_
#define KESTREL_ENGINE_REQUEST_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "model/sampler.h"
#include "scheduler/request.h"

namespace kestrel::engine {

struct GenerateParams {
  // Client-visible id (unique among active requests); the engine makes one
  // up when empty.
  std::string request_id;
  // Already tokenized; must be non-empty.
  std::vector<int32_t> prompt_ids;
  model::SamplingParams sampling;
  // Independent samples of the prompt, sharing its KV blocks.
  int n = 1;
  // Most tokens per sample; nullopt means up to the model's context length.
  std::optional<int> max_tokens;
  // EOS, stop token ids and stop strings are ignored before this many.
  int min_tokens = 0;
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  bool include_stop_str_in_output = false;
  bool skip_special_tokens = true;
  int priority = 0;
  std::string cache_salt;
  // Speculative decoding (prompt lookup): draft tokens each decode step
  // verifies, in [0, scheduler::kMaxSpeculativeTokens]; 0 disables, nullopt
  // takes the server's default (EngineOptions::num_speculative_tokens).
  // Greedy output is unchanged; sampled output keeps its distribution.
  std::optional<int> num_speculative_tokens;
  // The request ends with DEADLINE_EXCEEDED at the first step after it.
  absl::Time deadline = absl::InfiniteFuture();
  // Send the logits of every prompt position to RequestSink::OnPromptLogits
  // (offline tools and golden checks; the whole prompt is computed, the
  // prefix cache is not used).
  bool return_prompt_logits = false;
};

// Why a sample ended (scheduler/request.h); FinishReasonLabel gives the
// API's grouping ("length", "stop", "eos", "cancelled", "error").
using scheduler::FinishReason;
using scheduler::FinishReasonLabel;
// Range of GenerateParams::num_speculative_tokens: [0, kMaxSpeculativeTokens].
using scheduler::kMaxSpeculativeTokens;

struct TokenEvent {
  // Which sample (0 <= index < n).
  int index = 0;
  std::vector<int32_t> token_ids;
  // Complete UTF-8; text that may start a stop string is held back.
  std::string text;
  // One per token id, when sampling.logprobs.
  std::vector<model::SampledToken> logprobs;
};

struct Usage {
  int prompt_tokens = 0;
  int cached_prompt_tokens = 0;
  int completion_tokens = 0;
};

struct Timings {
  absl::Duration queue = absl::ZeroDuration();
  absl::Duration time_to_first_token = absl::ZeroDuration();
  absl::Duration total = absl::ZeroDuration();
};

struct FinishEvent {
  int index = 0;
  FinishReason reason = FinishReason::kLength;
  // Why the sample ended abnormally: CANCELLED (client cancel or Abort),
  // DEADLINE_EXCEEDED, UNAVAILABLE (drain), INVALID_ARGUMENT /
  // RESOURCE_EXHAUSTED (refused by the scheduler), INTERNAL. OK otherwise.
  absl::Status status;
  std::optional<std::string> stop_string;
  std::optional<int32_t> stop_token_id;
  Usage usage;
  Timings timings;
};

// Receives one request's events. Called only from the engine's step loop, in
// order: token events, then exactly one FinishEvent per sample (a request
// refused before it started gets one FinishEvent with index 0 and an error,
// even when n > 1). Implementations must not block: buffer and return.
class RequestSink {
 public:
  virtual ~RequestSink() = default;
  virtual void OnTokens(TokenEvent event) = 0;
  virtual void OnFinish(FinishEvent event) = 0;
  // With GenerateParams::return_prompt_logits: the logits at prompt
  // position `position` ([vocab]; valid during the call), once per position
  // in order, before the first token event.
  virtual void OnPromptLogits(int position, std::span<const float> logits) {
    (void)position;
    (void)logits;
  }
};

}  // namespace kestrel::engine

#endif  // KESTREL_ENGINE_REQUEST_H_
