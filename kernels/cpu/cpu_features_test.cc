// Tests for CPU feature detection and ISA resolution.
#include "kernels/cpu/cpu_features.h"

#include <catch2/catch.hpp>

namespace kestrel::kernels::cpu {
namespace {

TEST_CASE("ISA resolution is consistent with the features", "[cpu_features]") {
  const CpuFeatures& f = GetCpuFeatures();
  CHECK(IsaSupported(Isa::kScalar));
  CHECK(IsaSupported(BestIsa()));
  CHECK(ResolveIsa(Isa::kAuto) == BestIsa());
  CHECK(ResolveIsa(Isa::kAvx2) == Isa::kAvx2);
  if (IsaSupported(Isa::kAvx512)) {
    CHECK(f.avx512f);
    CHECK(BestIsa() == Isa::kAvx512);
  }
  if (IsaSupported(Isa::kAvx2)) CHECK((f.avx2 && f.fma && f.f16c));
  CHECK(IsaName(Isa::kAvx512) == "avx512");
  CHECK(IsaName(Isa::kScalar) == "scalar");
}

}  // namespace
}  // namespace kestrel::kernels::cpu
