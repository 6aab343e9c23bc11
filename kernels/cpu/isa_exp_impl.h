// exp(x) over an ISA traits type (isa_traits_*.h), used by attention's
// online softmax and by SiLU. Internal linkage: included only by the per-ISA
// translation units (see isa_traits_scalar.h).
#ifndef KESTREL_KERNELS_CPU_ISA_EXP_IMPL_H_
#define KESTREL_KERNELS_CPU_ISA_EXP_IMPL_H_

namespace kestrel::kernels::cpu::isa {
namespace {

// Cephes expf: range reduction by ln 2 (in two parts), degree-6 polynomial,
// then 2^n; relative error ~2e-7. Inputs are clamped to [-87, 88]: tiny or
// huge results, never NaN or inf from the clamp itself. Traits without
// kPolyExp supply their own (the scalar variant: std::exp).
template <class T>
inline typename T::Vec Exp(typename T::Vec x) {
  if constexpr (!T::kPolyExp) {
    return T::ExpNative(x);
  } else {
    x = T::Min(T::Max(x, T::Set1(-87.0f)), T::Set1(88.0f));
    const typename T::Vec n = T::Round(T::Mul(x, T::Set1(1.44269504088896341f)));
    typename T::Vec r = T::Fnmadd(n, T::Set1(0.693359375f), x);
    r = T::Fnmadd(n, T::Set1(-2.12194440e-4f), r);
    typename T::Vec p = T::Set1(1.9875691500e-4f);
    p = T::Fmadd(p, r, T::Set1(1.3981999507e-3f));
    p = T::Fmadd(p, r, T::Set1(8.3334519073e-3f));
    p = T::Fmadd(p, r, T::Set1(4.1665795894e-2f));
    p = T::Fmadd(p, r, T::Set1(1.6666665459e-1f));
    p = T::Fmadd(p, r, T::Set1(5.0000001201e-1f));
    p = T::Fmadd(p, T::Mul(r, r), T::Add(r, T::Set1(1.0f)));
    return T::Scale2(p, n);
  }
}

}  // namespace
}  // namespace kestrel::kernels::cpu::isa

#endif  // KESTREL_KERNELS_CPU_ISA_EXP_IMPL_H_
