// Kernels the emulation's own tests run through the emulated build's .cu
// pipeline (bazel/cuda.bzl): static __shared__ registration and a block
// reduction with and without one of its barriers (the mutation test).
#ifndef KESTREL_KERNELS_CUDA_EMULATION_EMULATION_TEST_KERNELS_H_
#define KESTREL_KERNELS_CUDA_EMULATION_EMULATION_TEST_KERNELS_H_

#include "kernels/cuda/cuda_compat.h"

namespace kestrel::cuda::testing {

// out: [blocks, 64]: what each block's first 64 threads read from a static
// __shared__ array before writing it (each block then writes its index).
cudaError_t ProbeStaticShared(unsigned* out, int blocks, cudaStream_t stream);

// out[b] = sum of in[b * 256 .. b * 256 + 255], a shared-memory tree
// reduction in 256-thread blocks. With `drop_loop_barrier` the barrier
// inside the tree loop is missing (a bug the emulation must expose).
cudaError_t BlockSums(const float* in, float* out, int blocks, bool drop_loop_barrier,
                      cudaStream_t stream);

}  // namespace kestrel::cuda::testing

#endif  // KESTREL_KERNELS_CUDA_EMULATION_EMULATION_TEST_KERNELS_H_
