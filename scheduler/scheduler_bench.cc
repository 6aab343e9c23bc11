// Microbenchmark of the scheduling decision: wall time of Scheduler::Step
// with 1,000 running and 1,000 waiting sequences (issue 5 asks for a median
// under 100 us). Update is timed separately. Run with -c opt:
//   bazel run -c opt //scheduler:scheduler_bench
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <vector>

#include "scheduler/scheduler.h"

namespace kestrel::scheduler {
namespace {

struct Timing {
  double p50_us, p90_us, p99_us, max_us;
};

Timing Summarize(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  auto at = [&](double p) { return v[static_cast<size_t>(p * (v.size() - 1))]; };
  return {at(0.5), at(0.9), at(0.99), v.back()};
}

struct Scenario {
  const char* name;
  // Requests drawn until this many run; as many more wait.
  int running = 1000;
  int waiting = 1000;
  int min_output = 50;
  int max_output = 500;
  // Finishing sequences are replaced from the waiting queue, which is topped
  // back up after every step, so each step mixes decodes and prefill chunks.
  bool steady_state = true;
};

int Run(const Scenario& sc) {
  Scheduler::Options o;
  o.block_size = 16;
  o.num_kv_blocks = 200000;  // memory is not the limiter here
  o.max_num_seqs = sc.running;
  o.max_num_batched_tokens = 8192;
  o.policy = SchedulingPolicy::kPriority;
  auto created = Scheduler::Create(o);
  if (!created.ok()) {
    std::fprintf(stderr, "%s\n", created.status().ToString().c_str());
    return 1;
  }
  Scheduler& sched = **created;
  std::mt19937_64 rng(42);
  auto uniform = [&](int lo, int hi) {
    return std::uniform_int_distribution<int>(lo, hi)(rng);
  };
  RequestId next_id = 1;
  auto add = [&]() {
    Request r;
    r.id = next_id++;
    r.prompt_token_ids.resize(uniform(32, 512));
    for (TokenId& t : r.prompt_token_ids) t = uniform(10, 31999);
    r.max_tokens = uniform(sc.min_output, sc.max_output);
    r.priority = uniform(0, 2);
    if (!sched.AddRequest(std::move(r)).ok()) std::abort();
  };
  StepOutput out;
  std::vector<SampledToken> sampled;
  auto step = [&](std::vector<double>* step_us, std::vector<double>* update_us) {
    auto t0 = std::chrono::steady_clock::now();
    if (!sched.Step(absl::UnixEpoch(), &out).ok()) std::abort();
    auto t1 = std::chrono::steady_clock::now();
    sampled.clear();
    for (const ScheduledSequence& s : out.scheduled) {
      for (int i = 0; i < s.num_samples; ++i) sampled.push_back({s.seq_id, uniform(10, 31999), false});
    }
    auto t2 = std::chrono::steady_clock::now();
    if (!sched.Update(sampled).ok()) std::abort();
    auto t3 = std::chrono::steady_clock::now();
    if (step_us) step_us->push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    if (update_us) update_us->push_back(std::chrono::duration<double, std::micro>(t3 - t2).count());
  };

  // Warm up: fill the running set, leave `waiting` behind it.
  for (int i = 0; i < sc.running + sc.waiting; ++i) add();
  while (sched.num_running() < sc.running) step(nullptr, nullptr);
  while (sched.num_waiting() < sc.waiting) add();

  std::vector<double> step_us, update_us;
  int64_t tokens = 0, decodes = 0, prefill = 0;
  constexpr int kSteps = 2000;
  int min_running = sc.running, min_waiting = sc.waiting;
  for (int i = 0; i < kSteps; ++i) {
    min_running = std::min(min_running, sched.num_running());
    min_waiting = std::min(min_waiting, sched.num_waiting());
    step(&step_us, &update_us);
    tokens += out.num_batched_tokens;
    decodes += out.num_decode_tokens;
    prefill += out.num_prefill_tokens;
    if (sc.steady_state) {
      while (sched.num_waiting() < sc.waiting) add();
    }
  }
  const Timing s = Summarize(step_us);
  const Timing u = Summarize(update_us);
  std::printf("%s: %d steps, running >= %d, waiting >= %d, avg %.0f decode + %.0f prefill tokens/step\n",
              sc.name, kSteps, min_running, min_waiting,
              static_cast<double>(decodes) / kSteps, static_cast<double>(prefill) / kSteps);
  std::printf("  Step   median %.1f us  p90 %.1f us  p99 %.1f us  max %.1f us\n", s.p50_us,
              s.p90_us, s.p99_us, s.max_us);
  std::printf("  Update median %.1f us  p90 %.1f us  p99 %.1f us  max %.1f us\n", u.p50_us,
              u.p90_us, u.p99_us, u.max_us);
  (void)tokens;
  return 0;
}

}  // namespace
}  // namespace kestrel::scheduler

int main() {
  using kestrel::scheduler::Scenario;
  Scenario steady{"steady state (finishing sequences replaced, waiting topped up)"};
  Scenario decode_only{"decode only (long outputs, nothing finishes)"};
  decode_only.min_output = 100000;
  decode_only.max_output = 100000;
  decode_only.steady_state = false;
  if (int rc = kestrel::scheduler::Run(steady); rc != 0) return rc;
  return kestrel::scheduler::Run(decode_only);
}
