// The CUDA backend of kernels/backend.h: device memory from cudaMalloc, one
// stream per backend (so per worker), pinned staging for the step's small
// host<->device copies, cuBLAS for the GEMMs and the project's kernels for
// every other op. Compiled twice from the same source (bazel/cuda.bzl):
// against the CUDA runtime for GPUs, and against the emulation
// (kernels/cuda/emulation) so CI runs the whole CUDA forward on the CPU.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<kernels::Backend> backend,
//                    cuda::CreateCudaBackend({.device = 0}));
//   ASSIGN_OR_RETURN(auto runner, model::ModelRunner::Create(options, weights, backend.get()));
//
// Errors a kernel finds in device data (a token id outside the vocabulary)
// come back from the next Synchronize or CopyToHost as INVALID_ARGUMENT
// (kernels/cuda/device_error.h); asynchronous faults as INTERNAL.
#ifndef KESTREL_KERNELS_CUDA_CUDA_BACKEND_H_
#define KESTREL_KERNELS_CUDA_CUDA_BACKEND_H_

#include <memory>

#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace kestrel::cuda {

struct CudaBackendOptions {
  // CUDA device ordinal.
  int device = 0;
};

// UNAVAILABLE, naming the device, when there is no usable GPU (no driver,
// no device, an ordinal out of range).
absl::StatusOr<std::unique_ptr<kernels::Backend>> CreateCudaBackend(
    const CudaBackendOptions& options);

}  // namespace kestrel::cuda

#endif  // KESTREL_KERNELS_CUDA_CUDA_BACKEND_H_
