// Offline generation: runs a set of requests to completion on a ModelRunner
// with a deliberately simple policy (decodes first, then prefill chunks of at
// most `prefill_chunk` tokens within a per-step token budget; KV blocks from
// a free list). It serves kestrel-generate, the benchmarks and the tests; the
// serving scheduler (scheduler/) is the real policy.
#ifndef KESTREL_MODEL_GENERATE_H_
#define KESTREL_MODEL_GENERATE_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/model_runner.h"
#include "model/sampler.h"

namespace kestrel::model {

struct GenerationRequest {
  std::vector<int32_t> prompt_ids = {};
  SamplingParams sampling = {};
  // Tokens to generate; 0 only runs the prompt (e.g. for prompt_logits).
  int32_t max_tokens = 16;
  // Stop after sampling one of the config's eos ids (kept in output_ids).
  bool stop_at_eos = true;
  // Return the logits of every prompt position.
  bool prompt_logits = false;
  // The step at which the request joins (tests use it to mix prefills of
  // late arrivals with decodes of earlier ones).
  int32_t arrival_step = 0;
};

struct GenerationResult {
  std::vector<int32_t> output_ids;
  std::vector<SampledToken> tokens;  // per output token, with logprobs if asked
  std::vector<float> prompt_logits;  // [prompt_len, vocab] when asked
  std::string finish_reason;         // "length" or "stop"
};

struct GenerateOptions {
  // Longest prefill chunk per sequence per step.
  int64_t prefill_chunk = 512;
  // Token budget of one step (decodes count one each).
  int64_t max_step_tokens = 2048;
};

// Statistics of a Generate call (for the benchmark).
struct GenerateStats {
  int64_t steps = 0;
  int64_t prefill_tokens = 0;
  int64_t decode_tokens = 0;
  double prefill_seconds = 0;  // steps without decodes
  double decode_seconds = 0;   // steps with at least one decode
};

// Runs `requests` to completion; results in request order. Errors: invalid
// sampling parameters or token ids, a prompt longer than the context, or the
// KV pool running out of blocks (ResourceExhausted).
absl::StatusOr<std::vector<GenerationResult>> Generate(ModelRunner& runner,
                                                       std::span<const GenerationRequest> requests,
                                                       const GenerateOptions& options = {},
                                                       GenerateStats* stats = nullptr);

}  // namespace kestrel::model

#endif  // KESTREL_MODEL_GENERATE_H_
