// Randomized invariant checks across many seeds and workload shapes, and the
// shared-prefix workload whose prefill savings must match the prefix cache's
// counters.
#include "scheduler/simulator.h"

#include <catch2/catch.hpp>

namespace kestrel::scheduler {
namespace {

// A pool small enough that preemption is routine.
SimOptions StressOptions(uint64_t seed) {
  SimOptions o;
  o.seed = seed;
  o.num_requests = 60;
  o.arrival_rate = 400;
  o.min_prompt_tokens = 1;
  o.max_prompt_tokens = 90;
  o.min_output_tokens = 1;
  o.max_output_tokens = 40;
  o.shared_prefix_fraction = 0.5;
  o.num_shared_prefixes = 3;
  o.shared_prefix_tokens = 20;
  o.cancel_fraction = 0.1;
  o.max_cancel_delay = absl::Milliseconds(200);
  o.deadline_fraction = 0.1;
  o.max_deadline = absl::Milliseconds(400);
  o.multi_sample_fraction = 0.15;
  o.max_n = 3;
  o.oversize_fraction = 0.03;
  o.eos_probability = 0.01;
  o.stop_string_probability = 0.005;
  Scheduler::Options& s = o.scheduler;
  s.block_size = 4;
  s.num_kv_blocks = 40;  // 160 tokens of KV
  s.max_num_batched_tokens = 48;
  s.max_num_seqs = 8;
  s.watermark = 0.05;
  // A run takes a few hundred steps; a livelock fails fast instead of
  // timing out.
  o.max_steps = 20000;
  return o;
}

TEST_CASE("Randomized simulations keep every invariant") {
  int64_t total_steps = 0;
  int64_t total_preemptions = 0;
  int64_t outcomes[4] = {0, 0, 0, 0};
  for (uint64_t seed = 1; seed <= 128; ++seed) {
    SimOptions o = StressOptions(seed);
    // Vary the configuration with the seed so every combination is covered.
    o.scheduler.policy = seed % 2 ? SchedulingPolicy::kPriority : SchedulingPolicy::kFcfs;
    o.num_priorities = seed % 2 ? 3 : 1;
    o.scheduler.enable_prefix_caching = (seed / 2) % 2 == 0;
    o.scheduler.enable_chunked_prefill = (seed / 4) % 3 != 0;
    if (!o.scheduler.enable_chunked_prefill) {
      // Whole recomputes must fit a step: prompt + output - 1 <= budget.
      o.scheduler.max_num_batched_tokens = 140;
    }
    o.scheduler.block_size = (seed / 12) % 2 ? 4 : 16;
    if (o.scheduler.block_size == 16) o.scheduler.num_kv_blocks = 10;
    o.scheduler.max_waiting_sequences = seed % 5 == 0 ? 12 : 0;
    INFO("seed " << seed);
    auto report = RunSimulation(o);
    if (!report.ok()) FAIL(report.status().ToString());
    CHECK(report->requests_finished + report->requests_aborted +
              report->requests_rejected + report->requests_expired ==
          o.num_requests);
    total_steps += report->steps;
    total_preemptions += report->preemptions;
    outcomes[0] += report->requests_finished;
    outcomes[1] += report->requests_aborted;
    outcomes[2] += report->requests_rejected;
    outcomes[3] += report->requests_expired;
  }
  WARN("steps " << total_steps << ", preemptions " << total_preemptions
                << ", finished " << outcomes[0] << ", aborted " << outcomes[1]
                << ", rejected " << outcomes[2] << ", expired " << outcomes[3]);
  // The workloads must actually exercise the interesting paths.
  CHECK(total_steps > 40000);
  CHECK(total_preemptions > 100);
  for (int64_t n : outcomes) CHECK(n > 10);
}

TEST_CASE("RunSimulation surfaces a scheduler configuration error") {
  SimOptions o = StressOptions(1);
  o.scheduler.max_num_batched_tokens = 1;
  CHECK_FALSE(RunSimulation(o).ok());
}

TEST_CASE("Prefix caching cuts prefill by the shared fraction; counters agree") {
  // Every request: one of 4 prefixes of 64 tokens (4 blocks) + 16..64 own
  // tokens. Ample pool: no preemption, so the only saving is the cache.
  SimOptions o;
  o.seed = 7;
  o.num_requests = 300;
  o.arrival_rate = 40;
  o.min_prompt_tokens = 16;
  o.max_prompt_tokens = 64;
  o.min_output_tokens = 4;
  o.max_output_tokens = 32;
  o.shared_prefix_fraction = 1.0;
  o.num_shared_prefixes = 4;
  o.shared_prefix_tokens = 64;
  o.scheduler.num_kv_blocks = 4096;
  o.scheduler.block_size = 16;
  o.scheduler.max_num_batched_tokens = 2048;
  o.scheduler.max_num_seqs = 256;
  // The randomized test covers invariants; this one measures.
  o.check_invariants = false;

  o.scheduler.enable_prefix_caching = false;
  auto off = RunSimulation(o);
  REQUIRE(off.ok());
  o.scheduler.enable_prefix_caching = true;
  auto on = RunSimulation(o);
  REQUIRE(on.ok());
  INFO("off:\n" << off->ToString() << "on:\n" << on->ToString());

  REQUIRE(off->preemptions == 0);
  REQUIRE(on->preemptions == 0);
  // Same workload either way.
  REQUIRE(off->prompt_tokens == on->prompt_tokens);
  CHECK(off->prefill_tokens_computed == off->prompt_tokens);
  CHECK(off->prefix_cached_tokens == 0);

  // Expected: all but the first request of each prefix skip its 64 tokens.
  const double expected = (o.num_requests - o.num_shared_prefixes) * 64.0 /
                          static_cast<double>(off->prompt_tokens);
  const double saved =
      1.0 - static_cast<double>(on->prefill_tokens_computed) / off->prefill_tokens_computed;
  CHECK(saved == Approx(expected).epsilon(0.03));
  // The counters tell the same story exactly.
  CHECK(on->prefill_tokens_computed + on->prefix_cached_tokens == on->prompt_tokens);
  CHECK(on->prefix_hit_blocks * 16 == on->prefix_cached_tokens);
  // Hit rate = hit blocks / full blocks eligible; each prompt's eligible
  // blocks are its (len - 1) / 16 full blocks, the first 4 of them shared.
  CHECK(on->prefix_hit_rate > 0.5);
  CHECK(on->prefix_hit_rate < 1.0);
}

}  // namespace
}  // namespace kestrel::scheduler
