// Portable scalar variant of the ISA entry points (see isa_kernels.h): the
// op-family templates (isa_*_impl.h) instantiated with one-lane traits. The
// fallback for CPUs without AVX2, and the baseline the SIMD variants are
// benchmarked against.
#include <cstdint>

#include "kernels/cpu/isa_kernels.h"
#include "kernels/cpu/isa_traits_scalar.h"
// The templates after the traits.
#include "kernels/cpu/isa_activation_impl.h"
#include "kernels/cpu/isa_attention_impl.h"
#include "kernels/cpu/isa_gemm_impl.h"
#include "kernels/cpu/isa_sum_impl.h"

namespace kestrel::kernels::cpu::isa {

void GemmRangeScalar(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  GemmRange<Scalar>(a, n_begin, n_end);
}
void ConvertToBf16Scalar(const float* x, int64_t ldx, int64_t m, int64_t k, uint16_t* out,
                         int64_t kpad) {
  ConvertToBf16<Scalar>(x, ldx, m, k, out, kpad);
}
void QuantizeI8Scalar(const float* x, int64_t ldx, int64_t m, int64_t k, int8_t* out,
                      int64_t kpad, float* scale, int32_t* sum) {
  QuantizeI8<Scalar>(x, ldx, m, k, out, kpad, scale, sum);
}
const AttentionVecOps kAttentionScalar = MakeAttentionVecOps<Scalar>();
void SiluMulScalar(const float* gate, const float* up, float* out, int64_t n) {
  SiluMul<Scalar>(gate, up, out, n);
}
float SumF32Scalar(const float* x, int64_t n) { return SumF32<Scalar>(x, n); }

}  // namespace kestrel::kernels::cpu::isa
