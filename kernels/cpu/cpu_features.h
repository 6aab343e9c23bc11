// Which SIMD instruction sets this CPU has, checked once at run time, and
// the kernel variant ("ISA") chosen from them. The build never assumes
// -march=native: SIMD code lives in translation units compiled with
// per-target copts and is only called after these checks.
#ifndef KESTREL_KERNELS_CPU_CPU_FEATURES_H_
#define KESTREL_KERNELS_CPU_CPU_FEATURES_H_

#include <string_view>
#include <vector>

namespace kestrel::kernels::cpu {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512bf16 = false;
  bool avx512vnni = false;
};

// Detected once (thread-safe).
const CpuFeatures& GetCpuFeatures();

// Kernel variants, best last.
enum class Isa : int {
  kAuto = -1,    // pick the best the CPU supports
  kScalar = 0,   // portable C++
  kAvx2 = 1,     // AVX2 + FMA + F16C
  kAvx512 = 2,   // AVX-512 F/BW/VL (+ AVX512_BF16 dot products when present)
};

std::string_view IsaName(Isa isa);

// The best variant this CPU runs.
Isa BestIsa();

// True if this CPU can run `isa` (kAuto and kScalar always).
bool IsaSupported(Isa isa);

// Every concrete variant this CPU runs, scalar first (for tests and
// benchmarks that cover each kernel variant).
std::vector<Isa> SupportedIsas();

// `isa` itself, or BestIsa() for kAuto.
Isa ResolveIsa(Isa isa);

}  // namespace kestrel::kernels::cpu

#endif  // KESTREL_KERNELS_CPU_CPU_FEATURES_H_
