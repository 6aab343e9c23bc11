// Internal: the per-ISA entry point tables (see isa_dispatch.h).
#include "kernels/cpu/isa_dispatch.h"

namespace kestrel::kernels::cpu {

const IsaTable& GetIsaTable(Isa isa) {
  // bf16_split_lanes: the traits' kLanes where kSplitBf16 is set.
  static const IsaTable kScalar = {&isa::GemmRangeScalar, &isa::ConvertToBf16Scalar, 0,
                                   true, &isa::QuantizeI8Scalar, &isa::kAttentionScalar, &isa::SiluMulScalar,
                                   &isa::SumF32Scalar};
  static const IsaTable kAvx2 = {&isa::GemmRangeAvx2, &isa::ConvertToBf16Avx2, 8,
                                 true, &isa::QuantizeI8Avx2, &isa::kAttentionAvx2, &isa::SiluMulAvx2, &isa::SumF32Avx2};
  static const IsaTable kAvx512 = {
      &isa::GemmRangeAvx512,
      GetCpuFeatures().avx512bf16 ? &isa::ConvertToBf16Avx512 : nullptr,
      16,
      GetCpuFeatures().avx512vnni,
      &isa::QuantizeI8Avx512,
      &isa::kAttentionAvx512,
      &isa::SiluMulAvx512,
      &isa::SumF32Avx512};
  switch (isa) {
    case Isa::kAvx512: return kAvx512;
    case Isa::kAvx2: return kAvx2;
    case Isa::kScalar:
    case Isa::kAuto:  // callers resolve kAuto first; scalar is always safe
      return kScalar;
  }
  return kScalar;
}

}  // namespace kestrel::kernels::cpu
