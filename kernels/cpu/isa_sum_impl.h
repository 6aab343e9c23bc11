// The read-bandwidth probe's F32 sum over an ISA traits type
// (isa_traits_*.h). Internal linkage: included only by the per-ISA
// translation units.
#ifndef KESTREL_KERNELS_CPU_ISA_SUM_IMPL_H_
#define KESTREL_KERNELS_CPU_ISA_SUM_IMPL_H_

#include <cstdint>

#include "kernels/cpu/isa_kernels.h"

namespace kestrel::kernels::cpu::isa {
namespace {

// Sum of x[0, n): kSumStreams equal parts read side by side, one
// accumulator each (see isa_kernels.h), then the rest, then the lanes.
template <class T>
float SumF32(const float* x, int64_t n) {
  constexpr int L = T::kLanes;
  const int64_t part = n / kSumStreams / L * L;
  typename T::Vec acc[kSumStreams];
  for (int s = 0; s < kSumStreams; ++s) acc[s] = T::Zero();
  for (int64_t i = 0; i < part; i += L) {
    for (int s = 0; s < kSumStreams; ++s) acc[s] = T::Add(acc[s], T::Load(x + s * part + i));
  }
  int64_t i = kSumStreams * part;
  for (; i + L <= n; i += L) acc[0] = T::Add(acc[0], T::Load(x + i));
  if (i < n) acc[0] = T::Add(acc[0], T::LoadMasked(x + i, T::TailMask(n - i)));
  for (int s = 1; s < kSumStreams; ++s) acc[0] = T::Add(acc[0], acc[s]);
  return T::ReduceAdd(acc[0]);
}

}  // namespace
}  // namespace kestrel::kernels::cpu::isa

#endif  // KESTREL_KERNELS_CPU_ISA_SUM_IMPL_H_
