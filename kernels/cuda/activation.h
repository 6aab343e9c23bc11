// The gated MLP activation on the GPU (Ops::SiluAndMul): SiLU(gate) * up, as
// in Llama, Mistral and Qwen. Elementwise over [rows, dim], float4 at a time
// when the row length, pointers and strides allow.
#ifndef KESTREL_KERNELS_CUDA_ACTIVATION_H_
#define KESTREL_KERNELS_CUDA_ACTIVATION_H_

#include <cstdint>

#include "kernels/cuda/cuda_compat.h"

namespace kestrel::cuda {

// out[r, i] = gate[r, i] / (1 + exp(-gate[r, i])) * up[r, i].
// gate, up, out: [rows, dim] with their own row strides (gate and up may be
// the two halves of one fused [rows, 2 * dim] buffer). out may equal gate or
// up. Device pointers. Returns cudaErrorInvalidValue for negative sizes, a
// stride < dim, or a null pointer when there is work; otherwise the launch
// error (an empty tensor launches nothing).
cudaError_t SiluAndMul(const float* gate, int64_t gate_stride, const float* up, int64_t up_stride,
                       float* out, int64_t out_stride, int64_t rows, int64_t dim,
                       cudaStream_t stream);

}  // namespace kestrel::cuda

#endif  // KESTREL_KERNELS_CUDA_ACTIVATION_H_
