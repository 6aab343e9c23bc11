// The CPU backend of the op interface (kernels/ops.h): forwards each op to
// the CPU kernel of its family, running GEMM and attention on a thread pool.
#ifndef KESTREL_KERNELS_CPU_CPU_OPS_H_
#define KESTREL_KERNELS_CPU_CPU_OPS_H_

#include <memory>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/ops.h"

namespace kestrel::kernels::cpu {

struct CpuOpsOptions {
  // Not owned; must outlive the Ops. Null runs everything on the caller.
  ThreadPool* pool = nullptr;
  // GEMM variant; kAuto picks the best the CPU supports.
  Isa gemm_isa = Isa::kAuto;
};

std::unique_ptr<Ops> CreateCpuOps(const CpuOpsOptions& options);

}  // namespace kestrel::kernels::cpu

#endif  // KESTREL_KERNELS_CPU_CPU_OPS_H_
