// GEMM for Linear layers on the CPU: y[M,N] = x[M,K] · W[N,K]ᵀ (+bias)
// (+y), activations F32, W in F32, BF16 or F16 exactly as in the checkpoint,
// or int8 with per-channel scales (x then quantized per row, W8A8).
// The variant (AVX-512, AVX2+FMA+F16C, scalar) is chosen at run time; N is
// split over the thread pool. See GemmParams in kernels/ops.h and
// docs/kernels.md for the design and measured numbers.
#ifndef KESTREL_KERNELS_CPU_GEMM_H_
#define KESTREL_KERNELS_CPU_GEMM_H_

#include "absl/status/status.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/ops.h"

namespace kestrel::kernels::cpu {

// Validates p (null pointers, strides < sizes, m/n/k < 0, unsupported isa)
// and runs it on `pool` (null: the calling thread only). m == 0 or n == 0 is
// a no-op; k == 0 gives y = bias (or leaves y + bias when accumulating).
// `isa` forces a variant (tests, benchmarks); an ISA the CPU lacks is an
// error, kAuto picks the best.
absl::Status Gemm(const GemmParams& p, ThreadPool* pool, Isa isa = Isa::kAuto);

}  // namespace kestrel::kernels::cpu

#endif  // KESTREL_KERNELS_CPU_GEMM_H_
