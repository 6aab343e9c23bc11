// The one header CUDA kernels (and their host launchers' headers) include for
// the CUDA runtime. Kernels launch through launch_kernel() rather than
// <<<...>>> and declare dynamic shared memory with KESTREL_DYNAMIC_SHARED, so
// the same .cu sources also compile with the host compiler against the CPU
// emulation of the execution model (kernels/cuda/emulation, selected by
// KESTREL_CUDA_EMULATION) and run in the tests without a GPU. Only this
// header differs between the two builds.
#ifndef KESTREL_KERNELS_CUDA_CUDA_COMPAT_H_
#define KESTREL_KERNELS_CUDA_CUDA_COMPAT_H_

#include <cstddef>
#include <utility>

#ifdef KESTREL_CUDA_EMULATION
#include "kernels/cuda/emulation/cuda_emulation.h"
#else
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#endif

// Inside a kernel: `KESTREL_DYNAMIC_SHARED(float, smem);` declares
// `float* smem`, the block's dynamic shared memory (the launch's
// dynamic_smem_bytes, 16-byte aligned). The emulation fills it with NaN
// bytes (0xff) before each block, so reads of unwritten elements show.
#if defined(KESTREL_CUDA_EMULATION)
#define KESTREL_DYNAMIC_SHARED(T, name) \
  T* name = reinterpret_cast<T*>(::kestrel::cuda::emulation::DynamicSharedMemory())
#else
#define KESTREL_DYNAMIC_SHARED(T, name)                                     \
  extern __shared__ __align__(16) unsigned char kestrel_dynamic_smem[]; \
  T* name = reinterpret_cast<T*>(kestrel_dynamic_smem)
#endif

namespace kestrel::cuda {

// Launches `kernel` on `stream` and returns the launch error, if any (the
// last error is consumed, as cudaGetLastError() does). The emulation runs
// the kernel to completion before returning and ignores the stream.
template <typename... KernelArgs, typename... Args>
cudaError_t launch_kernel(void (*kernel)(KernelArgs...), dim3 grid, dim3 block,
                          size_t dynamic_smem_bytes, cudaStream_t stream, Args&&... args) {
#if defined(KESTREL_CUDA_EMULATION)
  (void)stream;
  return emulation::Launch(kernel, grid, block, dynamic_smem_bytes, std::forward<Args>(args)...);
#elif defined(__CUDACC__)
  kernel<<<grid, block, dynamic_smem_bytes, stream>>>(static_cast<KernelArgs>(args)...);
  return cudaGetLastError();
#else
  static_assert(sizeof...(Args) < 0, "launch_kernel needs nvcc or KESTREL_CUDA_EMULATION");
  return cudaErrorNotSupported;
#endif
}

}  // namespace kestrel::cuda

#endif  // KESTREL_KERNELS_CUDA_CUDA_COMPAT_H_
