// AVX2 + FMA + F16C variant of the ISA entry points (see isa_kernels.h): the
// op-family templates (isa_*_impl.h) instantiated with the AVX2 traits.
// Compiled with -mavx2 -mfma -mf16c (BUILD.bazel) and only called after a
// CPUID check.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/isa_kernels.h"
#include "kernels/cpu/isa_traits_avx2.h"
// The templates after the traits.
#include "kernels/cpu/isa_activation_impl.h"
#include "kernels/cpu/isa_attention_impl.h"
#include "kernels/cpu/isa_gemm_impl.h"
#include "kernels/cpu/isa_sum_impl.h"

namespace kestrel::kernels::cpu::isa {

void GemmRangeAvx2(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  GemmRange<Avx2>(a, n_begin, n_end);
}
void ConvertToBf16Avx2(const float* x, int64_t ldx, int64_t m, int64_t k, uint16_t* out,
                       int64_t kpad) {
  ConvertToBf16<Avx2>(x, ldx, m, k, out, kpad);
}
void QuantizeI8Avx2(const float* x, int64_t ldx, int64_t m, int64_t k, int8_t* out,
                    int64_t kpad, float* scale, int32_t* sum) {
  QuantizeI8<Avx2>(x, ldx, m, k, out, kpad, scale, sum);
}
const AttentionVecOps kAttentionAvx2 = MakeAttentionVecOps<Avx2>();
void SiluMulAvx2(const float* gate, const float* up, float* out, int64_t n) {
  SiluMul<Avx2>(gate, up, out, n);
}
float SumF32Avx2(const float* x, int64_t n) { return SumF32<Avx2>(x, n); }

}  // namespace kestrel::kernels::cpu::isa
