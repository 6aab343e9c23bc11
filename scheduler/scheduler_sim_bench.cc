// Serving simulation of the scheduler on a fake model and a fake clock:
// throughput, TTFT/ITL distributions, preemptions and prefix-cache hit rate
// for a few workload shapes. Run with -c opt:
//   bazel run -c opt //benchmarks:scheduler_sim_bench
#include <cstdio>
#include <string>

#include "scheduler/simulator.h"

namespace kestrel::scheduler {
namespace {

// A mid-size model on one accelerator, roughly: a fixed launch cost per step,
// compute-bound prefill, memory-bound decode.
SimOptions Base() {
  SimOptions o;
  o.seed = 1;
  o.num_requests = 2000;
  o.arrival_rate = 20;
  o.min_prompt_tokens = 16;
  o.max_prompt_tokens = 1024;
  o.min_output_tokens = 16;
  o.max_output_tokens = 512;
  o.step_overhead = absl::Milliseconds(4);
  o.per_prefill_token = absl::Microseconds(25);
  o.per_decode_token = absl::Microseconds(60);
  o.check_invariants = false;
  o.scheduler.num_kv_blocks = 8192;  // 131k tokens of KV
  o.scheduler.block_size = 16;
  o.scheduler.max_num_batched_tokens = 2048;
  o.scheduler.max_num_seqs = 256;
  return o;
}

bool Run(const std::string& name, const SimOptions& o) {
  auto report = RunSimulation(o);
  if (!report.ok()) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(), report.status().ToString().c_str());
    return false;
  }
  std::printf("== %s\n%s\n", name.c_str(), report->ToString().c_str());
  return true;
}

}  // namespace
}  // namespace kestrel::scheduler

int main() {
  using kestrel::scheduler::Base;
  using kestrel::scheduler::Run;
  using kestrel::scheduler::SchedulingPolicy;
  bool ok = true;

  ok &= Run("mixed lengths, Poisson 20 req/s", Base());

  auto shared = Base();
  shared.shared_prefix_fraction = 0.8;
  shared.num_shared_prefixes = 8;
  shared.shared_prefix_tokens = 512;  // a long system prompt
  shared.max_prompt_tokens = 256;
  shared.scheduler.enable_prefix_caching = false;
  ok &= Run("shared 512-token prefixes (80% of requests), prefix cache off", shared);
  shared.scheduler.enable_prefix_caching = true;
  ok &= Run("shared 512-token prefixes (80% of requests), prefix cache on", shared);

  auto pressure = Base();
  pressure.arrival_rate = 40;
  pressure.scheduler.num_kv_blocks = 1024;  // 16k tokens: preemption is routine
  pressure.scheduler.policy = SchedulingPolicy::kPriority;
  pressure.num_priorities = 3;
  pressure.cancel_fraction = 0.1;
  pressure.max_cancel_delay = absl::Seconds(5);
  pressure.deadline_fraction = 0.1;
  pressure.max_deadline = absl::Seconds(30);
  pressure.multi_sample_fraction = 0.1;
  pressure.eos_probability = 0.005;
  ok &= Run("memory pressure: 1024 blocks, priorities, cancels, deadlines, n>1", pressure);
  return ok ? 0 : 1;
}
