// A Backend decorator that times every op: its Ops forward each call to the
// wrapped backend's Ops and, while enabled, add the call's wall time to that
// op's total, so a benchmark can say where a step's time goes (GEMM,
// attention, the rest). Backend-neutral, so it lives next to the seam.
//
//   auto profiled = std::make_unique<ProfilingBackend>(std::move(backend));
//   profiled->set_enabled(true);
//   ... steps ...
//   const OpProfile& p = profiled->profile();  // p[OpKind::kGemm].seconds
//
// While enabled, each op is bracketed by device().Synchronize(), so its time
// is the op's execution, not its launch. On the CPU the ops are synchronous
// and Synchronize returns at once, so the figures are the ops' own. On an
// asynchronous device (CUDA) the syncs serialize host and device and take
// away the overlap of launches with kernels: a profiling mode only, never
// for serving or headline numbers. Disabled, an op costs one extra virtual
// call.
#ifndef KESTREL_KERNELS_PROFILING_BACKEND_H_
#define KESTREL_KERNELS_PROFILING_BACKEND_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "kernels/backend.h"

namespace kestrel::kernels {

// One value per virtual method of Ops.
enum class OpKind : int {
  kGemm = 0,
  kRmsNorm,
  kRmsNormPerHead,
  kApplyRope,
  kSiluAndMul,
  kEmbeddingGather,
  kWriteKvCache,
  kPagedAttention,
  kGatherRows,
  kCopyBlocks,
  kSample,
};
inline constexpr int kNumOpKinds = static_cast<int>(OpKind::kSample) + 1;

// "Gemm", "PagedAttention", ...: the Ops method's name.
std::string_view OpKindName(OpKind kind);

struct OpTime {
  int64_t calls = 0;
  double seconds = 0;  // wall time of those calls, synchronized
};

// Totals per op since the last Reset.
struct OpProfile {
  std::array<OpTime, kNumOpKinds> ops = {};

  OpTime& operator[](OpKind kind) { return ops[static_cast<size_t>(kind)]; }
  const OpTime& operator[](OpKind kind) const { return ops[static_cast<size_t>(kind)]; }
  // Over every op.
  double total_seconds() const;
  int64_t total_calls() const;
};

// Thread-compatible like any backend: one worker thread calls its ops.
// set_enabled, profile and Reset must not run concurrently with an op (in
// an engine: between steps, which the executor's handoff orders).
class ProfilingBackend final : public Backend {
 public:
  // Starts disabled. REQUIRES: inner is not null.
  explicit ProfilingBackend(std::unique_ptr<Backend> inner);
  ~ProfilingBackend() override;
  ProfilingBackend(const ProfilingBackend&) = delete;
  ProfilingBackend& operator=(const ProfilingBackend&) = delete;

  // The wrapped backend's device: allocations and copies are not timed.
  Device& device() override { return inner_->device(); }
  Ops& ops() override;
  // The wrapped backend's, with " (op profiling)" appended.
  std::string Describe() const override;

  void set_enabled(bool enabled);
  bool enabled() const;
  const OpProfile& profile() const;
  // Zeroes every total.
  void Reset();

 private:
  class TimedOps;

  std::unique_ptr<Backend> inner_;
  std::unique_ptr<TimedOps> ops_;  // calls inner_'s ops
};

}  // namespace kestrel::kernels

#endif  // KESTREL_KERNELS_PROFILING_BACKEND_H_
