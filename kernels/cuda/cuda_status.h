// The one mapping from CUDA runtime errors to absl::Status for host code
// (launchers return cudaError_t; the backend turns them into statuses that
// name what failed). Under the emulation a failed launch also carries the
// emulator's own message (a divergent barrier's file:line).
#ifndef KESTREL_KERNELS_CUDA_CUDA_STATUS_H_
#define KESTREL_KERNELS_CUDA_CUDA_STATUS_H_

#include <string>

#include "absl/status/status.h"
#include "kernels/cuda/cuda_compat.h"

namespace kestrel::cuda {

// OK for cudaSuccess; otherwise "WHAT: cudaErrorName (description)" with a
// code that says what the caller can do: RESOURCE_EXHAUSTED for out of
// memory, INVALID_ARGUMENT for invalid values, UNAVAILABLE when there is no
// usable device, INTERNAL for the rest (a kernel fault).
absl::Status CudaStatus(cudaError_t error, const std::string& what);

}  // namespace kestrel::cuda

#endif  // KESTREL_KERNELS_CUDA_CUDA_STATUS_H_
