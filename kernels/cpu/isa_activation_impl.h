// SiLU-and-mul over an ISA traits type (isa_traits_*.h). Internal linkage:
// included only by the per-ISA translation units.
#ifndef KESTREL_KERNELS_CPU_ISA_ACTIVATION_IMPL_H_
#define KESTREL_KERNELS_CPU_ISA_ACTIVATION_IMPL_H_

#include <cstdint>

#include "kernels/cpu/isa_exp_impl.h"

namespace kestrel::kernels::cpu::isa {
namespace {

template <class T>
inline typename T::Vec SiluMulVec(typename T::Vec g, typename T::Vec u) {
  const typename T::Vec e = Exp<T>(T::Sub(T::Zero(), g));
  return T::Mul(T::Div(g, T::Add(T::Set1(1.0f), e)), u);
}

// out[i] = gate[i] / (1 + exp(-gate[i])) * up[i] for i in [0, n).
template <class T>
void SiluMul(const float* gate, const float* up, float* out, int64_t n) {
  constexpr int L = T::kLanes;
  int64_t i = 0;
  for (; i + L <= n; i += L) T::Store(out + i, SiluMulVec<T>(T::Load(gate + i), T::Load(up + i)));
  if (i < n) {
    const typename T::Mask mask = T::TailMask(n - i);
    T::StoreMasked(out + i, mask,
                   SiluMulVec<T>(T::LoadMasked(gate + i, mask), T::LoadMasked(up + i, mask)));
  }
}

}  // namespace
}  // namespace kestrel::kernels::cpu::isa

#endif  // KESTREL_KERNELS_CPU_ISA_ACTIVATION_IMPL_H_
