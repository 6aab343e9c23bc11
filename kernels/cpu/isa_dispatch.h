// Internal: maps a resolved Isa to the variant's entry points.
#ifndef KESTREL_KERNELS_CPU_ISA_DISPATCH_H_
#define KESTREL_KERNELS_CPU_ISA_DISPATCH_H_

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/isa_kernels.h"

namespace kestrel::kernels::cpu {

struct IsaTable {
  void (*gemm_range)(const isa::GemmArgs& a, int64_t n_begin, int64_t n_end);
  // Rounds x to bf16 for GemmArgs::bf16_dot; null when the variant has no
  // bf16 dot-product path on this CPU (AVX-512 without AVX512_BF16).
  void (*convert_to_bf16)(const float* x, int64_t ldx, int64_t m, int64_t k, uint16_t* out,
                          int64_t kpad);
  // The lanes L of the even/odd split of x the exact BF16 path reads
  // (GemmArgs::xd); 0 when it reads x itself.
  int64_t bf16_split_lanes;
  // Whether gemm_range takes kWI8 weights on this CPU (AVX-512 needs VNNI;
  // gemm.cc falls back to AVX2 without it).
  bool i8_gemm;
  void (*quantize_i8)(const float* x, int64_t ldx, int64_t m, int64_t k, int8_t* out,
                      int64_t kpad, float* scale, int32_t* sum);
  const isa::AttentionVecOps* attention;
  void (*silu_mul)(const float* gate, const float* up, float* out, int64_t n);
  float (*sum_f32)(const float* x, int64_t n);
};

// REQUIRES: isa != kAuto and IsaSupported(isa).
const IsaTable& GetIsaTable(Isa isa);

}  // namespace kestrel::kernels::cpu

#endif  // KESTREL_KERNELS_CPU_ISA_DISPATCH_H_
