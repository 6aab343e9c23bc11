// Simulation harness for the scheduler: a fake model with a configurable
// cost per token and a fake clock drive a Scheduler through a generated
// workload, checking invariants after every step. Used by tests and by
// //benchmarks:scheduler_sim_bench. testonly.
#ifndef KESTREL_SCHEDULER_SIMULATOR_H_
#define KESTREL_SCHEDULER_SIMULATOR_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "scheduler/scheduler.h"

namespace kestrel::scheduler {

// A workload and the fake model it runs on. Lengths are drawn uniformly from
// their inclusive ranges; every random choice comes from `seed`.
struct SimOptions {
  Scheduler::Options scheduler;
  uint64_t seed = 1;

  // Workload.
  int num_requests = 200;
  // Poisson arrivals: mean requests per simulated second.
  double arrival_rate = 50;
  int min_prompt_tokens = 8;
  int max_prompt_tokens = 256;
  int min_output_tokens = 1;
  int max_output_tokens = 128;
  // Fraction of requests whose prompt starts with one of num_shared_prefixes
  // fixed prefixes of shared_prefix_tokens tokens (then their own suffix).
  double shared_prefix_fraction = 0;
  int num_shared_prefixes = 1;
  int shared_prefix_tokens = 0;
  // Fraction of requests the client cancels, at a uniform time within
  // max_cancel_delay of arrival (possibly while the request is in a step).
  double cancel_fraction = 0;
  absl::Duration max_cancel_delay = absl::Seconds(1);
  // Fraction of requests with a deadline, uniform within max_deadline.
  double deadline_fraction = 0;
  absl::Duration max_deadline = absl::Seconds(2);
  // Priorities are uniform in [0, num_priorities).
  int num_priorities = 1;
  // Fraction of requests with n uniform in [2, max_n].
  double multi_sample_fraction = 0;
  int max_n = 3;
  // Fraction of requests too long for the pool, which AddRequest must reject.
  double oversize_fraction = 0;
  // Per generated token: chance the fake model samples EOS (token 2), and
  // chance the engine reports a stop string.
  double eos_probability = 0;
  double stop_string_probability = 0;

  // Fake model cost of one step.
  absl::Duration step_overhead = absl::Milliseconds(2);
  absl::Duration per_prefill_token = absl::Microseconds(20);
  absl::Duration per_decode_token = absl::Microseconds(100);

  // Check scheduler and per-step invariants after every Step and Update
  // (O(sequences + blocks) per step). The first violation ends the run
  // with INTERNAL naming the seed and step.
  bool check_invariants = true;
  // Guard against a scheduler that stops making progress.
  int64_t max_steps = 2'000'000;
};

// Latency distribution in seconds.
struct LatencySummary {
  int64_t count = 0;
  double mean = 0;
  double p50 = 0;
  double p90 = 0;
  double p99 = 0;
  double max = 0;
};

struct SimReport {
  int64_t steps = 0;
  double simulated_seconds = 0;
  // Request outcomes; they add up to num_requests.
  int requests_finished = 0;  // every sample hit a stop condition
  int requests_aborted = 0;
  int requests_rejected = 0;
  int requests_expired = 0;  // deadline
  int64_t output_tokens = 0;
  double output_tokens_per_second = 0;
  // Prompt tokens of admitted requests, prefill tokens the fake model
  // computed (recomputation included) and those the prefix cache supplied.
  int64_t prompt_tokens = 0;
  int64_t prefill_tokens_computed = 0;
  int64_t prefix_cached_tokens = 0;
  // From the block manager's counters: hit blocks / queried blocks.
  double prefix_hit_rate = 0;
  int64_t prefix_hit_blocks = 0;
  int64_t preemptions = 0;
  int64_t max_batch_tokens = 0;
  LatencySummary ttft;  // arrival to first token
  LatencySummary itl;   // between consecutive tokens of one sample

  std::string ToString() const;
};

// Runs the workload to completion: every request ends, and the pool must be
// fully free again at the end.
absl::StatusOr<SimReport> RunSimulation(const SimOptions& options);

}  // namespace kestrel::scheduler

#endif  // KESTREL_SCHEDULER_SIMULATOR_H_
