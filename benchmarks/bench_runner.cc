// The load driver. One thread (the caller's) sleeps to each arrival time and
// starts requests; the backend's callbacks record results under a mutex.
#include "benchmarks/bench_runner.h"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <memory>
#include <mutex>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"

namespace kestrel::bench {
namespace {

constexpr absl::Duration kDeadlineGrace = absl::Milliseconds(500);

// In-flight accounting shared with the backend's callbacks. Thread-safe.
class InFlight {
 public:
  // Waits until fewer than `limit` (0: no limit) requests are in flight or
  // `until` passes; true if a slot is free.
  bool WaitForSlot(int limit, absl::Time until) {
    std::unique_lock<std::mutex> lock(mu_);
    if (limit <= 0) return true;
    return WaitUntil(lock, until, [this, limit] { return count_ < limit; });
  }
  void Add() {
    std::unique_lock<std::mutex> lock(mu_);
    ++count_;
  }
  void Finish(RequestRecord record, bool keep) {
    std::unique_lock<std::mutex> lock(mu_);
    --count_;
    end_ = std::max(end_, absl::Now());
    if (keep) records_.push_back(std::move(record));
    // Under the lock: once it is released the runner may return.
    cv_.notify_all();
  }
  // True when nothing is in flight by `until`.
  bool WaitForNone(absl::Time until) {
    std::unique_lock<std::mutex> lock(mu_);
    return WaitUntil(lock, until, [this] { return count_ == 0; });
  }
  std::vector<RequestRecord> TakeRecords() {
    std::unique_lock<std::mutex> lock(mu_);
    return std::move(records_);
  }
  absl::Time end() {
    std::unique_lock<std::mutex> lock(mu_);
    return end_;
  }

 private:
  template <typename Predicate>
  bool WaitUntil(std::unique_lock<std::mutex>& lock, absl::Time until, Predicate predicate) {
    if (until == absl::InfiniteFuture()) {
      cv_.wait(lock, predicate);
      return true;
    }
    return cv_.wait_until(lock, absl::ToChronoTime(until), predicate);
  }

  // std::mutex rather than absl::Mutex: TSan sees through the former
  // (Debian's Abseil is not built with TSan).
  std::mutex mu_;
  std::condition_variable cv_;
  int count_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time end_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::vector<RequestRecord> records_ ABSL_GUARDED_BY(mu_);
};

void Issue(Workload& workload, Backend& backend, InFlight& in_flight, absl::Time run_start,
           int64_t index, absl::Time deadline, bool keep) {
  const absl::Time issued = absl::Now();
  in_flight.Add();
  backend.Start(workload.Next(), deadline,
                [&in_flight, index, issued, run_start, keep](RequestRecord record) {
                  record.index = index;
                  record.start_s = absl::ToDoubleSeconds(issued - run_start);
                  in_flight.Finish(std::move(record), keep);
                });
}

// Cancels what is still running and waits for the callbacks, which the
// backends promise soon after a cancel.
void CancelAndWait(Backend& backend, InFlight& in_flight) {
  backend.CancelAll();
  in_flight.WaitForNone(absl::InfiniteFuture());
}

}  // namespace

absl::StatusOr<RunResult> RunBenchmark(const RunOptions& options, Workload& workload,
                                       Backend& backend) {
  if (options.num_requests < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("number of requests must be >= 0, got ", options.num_requests));
  }
  if (options.num_requests == 0 && options.duration <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("set a number of requests or a duration (or both)");
  }
  if (options.max_concurrency < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max concurrency must be >= 0, got ", options.max_concurrency));
  }
  if (options.request_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("request timeout must be positive");
  }
  absl::StatusOr<ArrivalProcess> arrivals = ArrivalProcess::Create(
      options.request_rate, options.arrivals, options.burstiness, options.seed);
  if (!arrivals.ok()) return arrivals.status();

  // Warm-up: same concurrency limit, no arrival schedule, not recorded.
  if (options.warmup_requests > 0) {
    InFlight warmup;
    for (int i = 0; i < options.warmup_requests; ++i) {
      warmup.WaitForSlot(options.max_concurrency, absl::InfiniteFuture());
      Issue(workload, backend, warmup, absl::Now(), -1 - i, absl::Now() + options.request_timeout,
            /*keep=*/false);
    }
    if (!warmup.WaitForNone(absl::Now() + options.request_timeout)) {
      CancelAndWait(backend, warmup);
    }
  }

  InFlight in_flight;
  RunResult result;
  const absl::Time start = absl::Now();
  const bool timed = options.duration > absl::ZeroDuration();
  const absl::Time issue_end = timed ? start + options.duration : absl::InfiniteFuture();
  // Nothing outlives this: requests get it as their deadline at the latest.
  const absl::Time hard_end = timed ? issue_end + options.drain_timeout : absl::InfiniteFuture();
  absl::Time next_arrival = start;
  for (int64_t index = 0; options.num_requests == 0 || index < options.num_requests; ++index) {
    if (next_arrival >= issue_end) break;
    absl::SleepFor(next_arrival - absl::Now());
    if (!in_flight.WaitForSlot(options.max_concurrency, issue_end)) break;
    const absl::Time now = absl::Now();
    if (now >= issue_end) break;
    Issue(workload, backend, in_flight, start, index,
          std::min(now + options.request_timeout, hard_end), /*keep=*/true);
    next_arrival += absl::Seconds(arrivals->NextGap());
  }
  // Requests see their deadlines pass at hard_end; the grace lets those
  // answers arrive so that they count as DEADLINE_EXCEEDED, not cancelled.
  if (!in_flight.WaitForNone(hard_end + kDeadlineGrace)) {
    // Only reachable with a duration: this catches backends slow to notice
    // their deadlines.
    result.cancelled_at_end = true;
    CancelAndWait(backend, in_flight);
  }
  result.records = in_flight.TakeRecords();
  std::sort(result.records.begin(), result.records.end(),
            [](const RequestRecord& a, const RequestRecord& b) { return a.index < b.index; });
  const absl::Time end = result.records.empty() ? absl::Now() : in_flight.end();
  result.duration_s = absl::ToDoubleSeconds(end - start);
  return result;
}

}  // namespace kestrel::bench
