// The CPU backend (kernels/backend.h): a Device whose memory is host memory
// (so checkpoint weights are used in place, zero copy) and the Ops that
// forward to the CPU kernel of each family, running GEMM, attention, SiLU
// and sampling on a persistent thread pool.
#ifndef KESTREL_KERNELS_CPU_CPU_BACKEND_H_
#define KESTREL_KERNELS_CPU_CPU_BACKEND_H_

#include <memory>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_features.h"

namespace kestrel::kernels::cpu {

struct CpuBackendOptions {
  // Threads running the kernels, including the caller; 0 = one per CPU.
  int num_threads = 0;
  // GEMM variant; kAuto picks the best the CPU supports. An ISA the CPU
  // lacks is an InvalidArgument error.
  Isa gemm_isa = Isa::kAuto;
};

absl::StatusOr<std::unique_ptr<Backend>> CreateCpuBackend(const CpuBackendOptions& options);

}  // namespace kestrel::kernels::cpu

#endif  // KESTREL_KERNELS_CPU_CPU_BACKEND_H_
