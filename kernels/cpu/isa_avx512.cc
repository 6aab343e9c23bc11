// AVX-512 variant of the ISA entry points (see isa_kernels.h): the op-family
// templates (isa_*_impl.h) instantiated with the AVX-512 traits. Compiled
// with -mavx512f/bw/vl/dq/bf16 (BUILD.bazel) and only called after a CPUID
// check; the bf16 dot-product path (ConvertToBf16Avx512, GemmArgs::bf16_dot)
// only when the CPU also has AVX512_BF16 (isa_dispatch.cc).
// GCC 12 reports its own _mm512_undefined_*() placeholders inside the
// intrinsic headers as uninitialized once they are inlined at -O2 (a known
// false positive); the values are never read.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/isa_kernels.h"
#include "kernels/cpu/isa_traits_avx512.h"
// The templates after the traits.
#include "kernels/cpu/isa_activation_impl.h"
#include "kernels/cpu/isa_attention_impl.h"
#include "kernels/cpu/isa_gemm_impl.h"
#include "kernels/cpu/isa_sum_impl.h"

namespace kestrel::kernels::cpu::isa {

void GemmRangeAvx512(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  GemmRange<Avx512>(a, n_begin, n_end);
}
void ConvertToBf16Avx512(const float* x, int64_t ldx, int64_t m, int64_t k, uint16_t* out,
                         int64_t kpad) {
  ConvertToBf16<Avx512>(x, ldx, m, k, out, kpad);
}
void QuantizeI8Avx512(const float* x, int64_t ldx, int64_t m, int64_t k, int8_t* out,
                      int64_t kpad, float* scale, int32_t* sum) {
  QuantizeI8<Avx512>(x, ldx, m, k, out, kpad, scale, sum);
}
const AttentionVecOps kAttentionAvx512 = MakeAttentionVecOps<Avx512>();
void SiluMulAvx512(const float* gate, const float* up, float* out, int64_t n) {
  SiluMul<Avx512>(gate, up, out, n);
}
float SumF32Avx512(const float* x, int64_t n) { return SumF32<Avx512>(x, n); }

}  // namespace kestrel::kernels::cpu::isa
