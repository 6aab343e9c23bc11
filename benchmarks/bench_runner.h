// kestrel-bench's load driver: issues a workload's requests to a backend on
// an arrival schedule under a concurrency limit, for a bounded number of
// requests and/or time, and collects one RequestRecord per request.
#ifndef KESTREL_BENCHMARKS_BENCH_RUNNER_H_
#define KESTREL_BENCHMARKS_BENCH_RUNNER_H_

#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "benchmarks/bench_metrics.h"
#include "benchmarks/bench_workload.h"

namespace kestrel::bench {

// A way to send one streaming request to a server (gRPC, OpenAI HTTP).
// Implementations are thread-safe.
class Backend {
 public:
  using DoneCallback = std::function<void(RequestRecord)>;
  virtual ~Backend() = default;

  // Checks that the server answers, within `timeout`.
  virtual absl::Status Probe(absl::Duration timeout) = 0;

  // Starts `request` and returns at once. Calls `done` exactly once, from
  // any thread, with ttft/itl/e2e measured from this call, tokens and
  // status filled in (index and start_s are the runner's). The request is
  // abandoned at `deadline` (status DEADLINE_EXCEEDED or the backend's
  // equivalent).
  virtual void Start(const BenchRequest& request, absl::Time deadline, DoneCallback done) = 0;

  // Cancels everything in flight; their `done` callbacks still run.
  virtual void CancelAll() = 0;
};

struct RunOptions {
  // Mean arrivals per second; infinity issues every request at once (then
  // only max_concurrency limits the load).
  double request_rate = std::numeric_limits<double>::infinity();
  ArrivalProcess::Kind arrivals = ArrivalProcess::Kind::kPoisson;
  // Gamma shape of the gaps (1 = Poisson); see ArrivalProcess.
  double burstiness = 1.0;
  // Most requests in flight; 0 means no limit. Arrivals that find the limit
  // reached wait for a slot (their latency clock starts when issued).
  int max_concurrency = 0;
  // Measured requests; 0 means no limit (then `duration` must be set).
  int64_t num_requests = 0;
  // Requests are issued only during this time from the start of the
  // measured run; zero means no limit.
  absl::Duration duration = absl::ZeroDuration();
  // With `duration`: how long requests still in flight at its end may
  // finish before they are cancelled, so the run ends by duration + this
  // (+ half a second for the deadline answers to arrive).
  absl::Duration drain_timeout = absl::Seconds(10);
  // Deadline of each request, from its issue.
  absl::Duration request_timeout = absl::Seconds(60);
  // Requests run (and waited for) before the measured run, left out of the
  // results: they warm up connections, caches and the server's allocator.
  int warmup_requests = 0;
  uint64_t seed = 0;
};

struct RunResult {
  // Measured requests, in issue order.
  std::vector<RequestRecord> records;
  // First issue of the measured run to the end of its last request.
  double duration_s = 0;
  // The drain timeout passed and requests were cancelled.
  bool cancelled_at_end = false;
};

// Runs the benchmark on the calling thread. Fails only on invalid options.
absl::StatusOr<RunResult> RunBenchmark(const RunOptions& options, Workload& workload,
                                       Backend& backend);

}  // namespace kestrel::bench

#endif  // KESTREL_BENCHMARKS_BENCH_RUNNER_H_
