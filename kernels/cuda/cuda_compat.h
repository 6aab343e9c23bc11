// The one header CUDA kernels include for the CUDA runtime. Kernels launch
// through launch_kernel() rather than <<<...>>> so that the same .cu sources
// can later also be compiled by the host compiler against a CPU emulation of
// the execution model (see docs/ARCHITECTURE.md, "CUDA backend"); only this
// header changes between the two builds.
#ifndef KESTREL_KERNELS_CUDA_CUDA_COMPAT_H_
#define KESTREL_KERNELS_CUDA_CUDA_COMPAT_H_

#include <cuda_runtime.h>

namespace kestrel::cuda {

// Launches `kernel` on `stream` and returns the launch error, if any.
template <typename... KernelArgs, typename... Args>
cudaError_t launch_kernel(void (*kernel)(KernelArgs...), dim3 grid, dim3 block,
                          size_t dynamic_smem_bytes, cudaStream_t stream, Args&&... args) {
#ifdef __CUDACC__
  kernel<<<grid, block, dynamic_smem_bytes, stream>>>(static_cast<KernelArgs>(args)...);
  return cudaGetLastError();
#else
  static_assert(sizeof...(Args) < 0, "launch_kernel needs nvcc (or the CPU emulator)");
  return cudaErrorNotSupported;
#endif
}

}  // namespace kestrel::cuda

#endif  // KESTREL_KERNELS_CUDA_CUDA_COMPAT_H_
