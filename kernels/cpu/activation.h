// The gated MLP activation on the CPU: SiLU(gate) * up (Llama, Mistral, Qwen).
#ifndef KESTREL_KERNELS_CPU_ACTIVATION_H_
#define KESTREL_KERNELS_CPU_ACTIVATION_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/thread_pool.h"

namespace kestrel::kernels::cpu {

// out[r, i] = gate[r, i] / (1 + exp(-gate[r, i])) * up[r, i].
// gate, up, out: [rows, dim] with their own row strides (gate and up may be
// the two halves of one fused [rows, 2*dim] buffer). out may equal gate or up.
// exp is a vectorised polynomial (relative error ~2e-7) on AVX2/AVX-512.
// Rows are split over `pool` (null: the calling thread) when large; `isa`
// forces a variant (tests), kAuto picks the best.
absl::Status SiluAndMul(const float* gate, int64_t gate_stride, const float* up,
                        int64_t up_stride, float* out, int64_t out_stride, int64_t rows,
                        int64_t dim, ThreadPool* pool = nullptr, Isa isa = Isa::kAuto);

}  // namespace kestrel::kernels::cpu

#endif  // KESTREL_KERNELS_CPU_ACTIVATION_H_
