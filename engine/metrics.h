// The engine's Prometheus metrics, defined once next to the code that owns
// the events (the step loop). Every series carries a `model` label. Names
// follow Prometheus conventions: `_total` counters, base units (`_seconds`),
// latencies as histograms.
#ifndef KESTREL_ENGINE_METRICS_H_
#define KESTREL_ENGINE_METRICS_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "prometheus/registry.h"

namespace kestrel::engine {

// Load figures sampled after every step.
struct LoadSample {
  int running_requests = 0;
  int waiting_requests = 0;
  int kv_blocks_total = 0;
  int kv_blocks_free = 0;
  // Free blocks still holding reusable prefix-cache entries.
  int kv_blocks_cached = 0;
};

// One executed step.
struct StepSample {
  absl::Duration duration;
  int num_sequences = 0;
  int num_prefill_tokens = 0;
  int num_decode_tokens = 0;
  int num_preemptions = 0;
  // Prompt tokens admitted this step, and those served by the prefix cache.
  int prefix_cache_queried_tokens = 0;
  int prefix_cache_hit_tokens = 0;
  // Speculative decoding: sequences that verified drafts this step, the
  // draft tokens they proposed and how many were accepted.
  int spec_decode_steps = 0;
  int spec_draft_tokens = 0;
  int spec_accepted_tokens = 0;
  // [i]: tokens the i-th of those sequences emitted this step (1 + its
  // accepted drafts, cut where a stop ends it). Not owned; may be empty.
  std::span<const int> spec_tokens_per_sequence = {};
  // [rank] with tensor parallelism: each rank's time in the model step.
  // Not owned; may be empty.
  std::span<const absl::Duration> rank_step_times = {};
};

// One finished request (all its sequences).
struct RequestSample {
  // Lower-case final status: "ok", "cancelled", "deadline_exceeded",
  // "unavailable", "resource_exhausted", "invalid_argument", "internal"
  // (any lower-case absl::StatusCodeToString name is accepted). Any other
  // value is exported as "other" (bounds the number of series).
  std::string_view status;
  // Lower-case finish reason of its (first) sequence: "length", "stop",
  // "eos", "cancelled", "error"; any other value is exported as "other".
  std::string_view finish_reason;
  int prompt_tokens = 0;
  int generation_tokens = 0;
  // Unset (InfiniteDuration) when the request never got that far; an unset
  // duration is not observed. A request without queue_time (rejected before
  // admission) still counts in kestrel_requests_total and the token counters
  // but adds no sample to the prompt/generation length histograms.
  absl::Duration queue_time = absl::InfiniteDuration();
  absl::Duration time_to_first_token = absl::InfiniteDuration();
  absl::Duration end_to_end = absl::InfiniteDuration();
};

// Thread-safe (prometheus-cpp metrics are atomic). Series:
//   kestrel_requests_total{model,status,finish_reason}      counter
//   kestrel_requests_running{model}, kestrel_requests_waiting{model}   gauges
//   kestrel_kv_blocks{model,state="used"|"free"|"cached"}  gauge; "cached"
//       is a subset of "free" (as in LoadSample), so used + free = capacity
//   kestrel_kv_blocks_capacity{model}                       gauge, pool size
//   kestrel_kv_usage_ratio{model}                           gauge, used/total
//   kestrel_prefix_cache_queried_tokens_total{model}        counter
//   kestrel_prefix_cache_hit_tokens_total{model}            counter
//   kestrel_prompt_tokens_total{model}                      counter
//   kestrel_generation_tokens_total{model}                  counter
//   kestrel_preemptions_total{model}                        counter
//   kestrel_steps_total{model}                              counter
//   kestrel_step_duration_seconds{model}                    histogram
//   kestrel_rank_step_duration_seconds{model,rank}          histogram, with
//       tensor parallelism only: each rank's part of the model step
//   kestrel_step_batch_size{model}                          histogram (sequences)
//   kestrel_step_tokens{model}                              histogram (tokens)
//   kestrel_request_queue_time_seconds{model}               histogram
//   kestrel_time_to_first_token_seconds{model}              histogram
//   kestrel_inter_token_latency_seconds{model}              histogram
//   kestrel_request_e2e_latency_seconds{model}              histogram
//   kestrel_request_prompt_tokens{model}                    histogram
//   kestrel_request_generation_tokens{model}                histogram
// Buckets (metrics.cc): latencies 1 ms .. 65.5 s, token counts 1 .. 32768,
// batch sizes 1 .. 1024, all doubling. docs/metrics.md explains each series.
class EngineMetrics {
 public:
  // Registers every family in `registry` (not owned; must outlive this).
  EngineMetrics(prometheus::Registry& registry, std::string model_name);
  ~EngineMetrics();
  EngineMetrics(const EngineMetrics&) = delete;
  EngineMetrics& operator=(const EngineMetrics&) = delete;

  void RecordStep(const StepSample& step);
  void RecordLoad(const LoadSample& load);
  // Gap between two consecutive tokens of one sequence.
  void RecordInterTokenLatency(absl::Duration gap);
  void RecordRequest(const RequestSample& request);

 private:
  struct Families;
  std::unique_ptr<Families> families_;
};

}  // namespace kestrel::engine

#endif  // KESTREL_ENGINE_METRICS_H_
