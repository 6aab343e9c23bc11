// The machine's sustained memory read bandwidth, measured the way a
// memory-bound decode reads its weights: the pool's threads stream disjoint
// parts of a buffer far larger than the last-level cache, with the widest
// SIMD loads the CPU has. Benchmarks divide by it to report "% of the
// bandwidth limit".
#ifndef KESTREL_KERNELS_CPU_BANDWIDTH_H_
#define KESTREL_KERNELS_CPU_BANDWIDTH_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/thread_pool.h"

namespace kestrel::kernels::cpu {

struct BandwidthOptions {
  // Bytes streamed per pass, in anonymous huge-page-advised memory (how the
  // loader holds weights). Rounded down to a multiple of 4 KiB.
  uint64_t bytes = uint64_t{1} << 30;
  // The timed unit: each slice is one ParallelFor, as a GEMV over one weight
  // matrix is. 0 = the whole buffer.
  uint64_t slice_bytes = 0;
  Isa isa = Isa::kAuto;
};

struct BandwidthResult {
  // GB/s (1e9 bytes per second) over all timed slices.
  double median_gbs = 0;
  double min_gbs = 0;
  double max_gbs = 0;
  int samples = 0;
  Isa isa = Isa::kScalar;
  // Sum of every element read (each element is 1): the number of floats
  // read, proof that every byte was loaded (exact while each thread's chunk
  // of a slice is at most 64 MiB).
  double checksum = 0;
};

// Owns the buffer, so a benchmark can interleave probe passes with the work
// it measures (bandwidth on a shared machine drifts from second to second;
// only side-by-side figures compare).
class BandwidthProbe {
 public:
  // Allocates and fills the buffer and reads it once (untimed).
  // `pool` (null: the calling thread only) must outlive the probe.
  static absl::StatusOr<std::unique_ptr<BandwidthProbe>> Create(ThreadPool* pool,
                                                               const BandwidthOptions& options);
  ~BandwidthProbe();
  BandwidthProbe(const BandwidthProbe&) = delete;
  BandwidthProbe& operator=(const BandwidthProbe&) = delete;

  // Reads the whole buffer `passes` times, timing each slice.
  // REQUIRES: passes >= 1.
  BandwidthResult Measure(int passes);

  uint64_t bytes() const { return bytes_; }

 private:
  BandwidthProbe(ThreadPool* pool, float* data, uint64_t bytes, uint64_t slice, Isa isa);
  ThreadPool* pool_;
  float* data_;
  uint64_t bytes_;
  uint64_t slice_;
  Isa isa_;
};

// Create, then Measure(passes).
absl::StatusOr<BandwidthResult> MeasureReadBandwidth(ThreadPool* pool,
                                                     const BandwidthOptions& options,
                                                     int passes);

}  // namespace kestrel::kernels::cpu

#endif  // KESTREL_KERNELS_CPU_BANDWIDTH_H_
