// Where the engine reads the time: request arrival, deadlines, time to first
// token, inter-token latency, step durations. Tests inject a FakeClock and
// step the engine core by hand, so timelines are exact and nothing sleeps.
#ifndef KESTREL_ENGINE_CLOCK_H_
#define KESTREL_ENGINE_CLOCK_H_

#include <atomic>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace kestrel::engine {

// Thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
};

// absl::Now().
class RealClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  // A process-wide instance.
  static const Clock* Get() {
    static const RealClock clock;
    return &clock;
  }
};

// Time stands still until a test advances it. Thread-safe.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::UnixEpoch() + absl::Hours(24))
      : nanos_(absl::ToUnixNanos(start)) {}
  absl::Time Now() const override { return absl::FromUnixNanos(nanos_.load()); }
  void Advance(absl::Duration d) { nanos_.fetch_add(absl::ToInt64Nanoseconds(d)); }

 private:
  std::atomic<int64_t> nanos_;
};

}  // namespace kestrel::engine

#endif  // KESTREL_ENGINE_CLOCK_H_
