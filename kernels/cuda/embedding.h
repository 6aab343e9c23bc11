// Token embedding lookup on the GPU (Ops::EmbeddingGather): one thread block
// per token copies its table row, converted to F32, into the activations.
// The table stays in its checkpoint dtype (F32, F16 or BF16); F32 and BF16
// rows move in 16-byte loads when the row length and pointers allow, F16
// element by element. A bad id is found in device memory, so the kernel
// cannot fail the launch: it skips the token (its output row is left as it
// was) and records the id in `error` (kernels/cuda/device_error.h).
#ifndef KESTREL_KERNELS_CUDA_EMBEDDING_H_
#define KESTREL_KERNELS_CUDA_EMBEDDING_H_

#include <cstdint>

#include "kernels/cuda/cuda_compat.h"
#include "kernels/dtype.h"

namespace kestrel::cuda {

// kernels/cuda/device_error.h; declared here because that header defines
// device code, which a host-only compiler (the CUDA backend) cannot parse.
struct DeviceError;

// out[t, :] = float(table[ids[t], :]) for t in [0, num_tokens).
// table: [vocab_size, dim] in table_dtype (kF32, kF16 or kBF16), contiguous.
// ids: [num_tokens] in device memory; an id outside [0, vocab_size) leaves
//   out[t, :] untouched and is reported as DeviceErrorCode::kTokenId
//   (index t, value the id, limit vocab_size) unless `error` is null.
// out: [num_tokens, dim], row stride out_stride.
// Device pointers. Returns cudaErrorInvalidValue for a negative size,
// out_stride < dim, another dtype, or a null pointer when num_tokens > 0;
// otherwise the launch error (num_tokens == 0 launches nothing).
cudaError_t EmbeddingGather(const void* table, kernels::DType table_dtype, int64_t vocab_size,
                            int64_t dim, const int32_t* ids, int64_t num_tokens, float* out,
                            int64_t out_stride, DeviceError* error, cudaStream_t stream);

}  // namespace kestrel::cuda

#endif  // KESTREL_KERNELS_CUDA_EMBEDDING_H_
