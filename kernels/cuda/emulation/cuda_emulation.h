// A CPU emulation of the CUDA execution model, so the project's .cu kernels
// can be compiled by the host compiler and tested against the CPU kernels'
// references without a GPU (see docs/kernels.md, "CUDA kernels on the CPU").
//
// Included only through kernels/cuda/cuda_compat.h in targets that define
// KESTREL_CUDA_EMULATION; the nvcc build never sees it. Each CUDA thread of
// a block is a std::thread, blocks run one after another, `__shared__` is
// static storage (so it keeps values between blocks instead of holding
// garbage). __syncthreads() and warp shuffles are checked: threads that
// reach different barriers, leave the kernel while others wait, or shuffle
// with lanes missing from the mask make the launch fail with a message
// naming the file and line. Not emulated: dynamic shared memory, atomics,
// cooperative groups, tensor-core instructions, streams (launches are
// synchronous), and performance.
#ifndef KESTREL_KERNELS_CUDA_EMULATION_CUDA_EMULATION_H_
#define KESTREL_KERNELS_CUDA_EMULATION_CUDA_EMULATION_H_

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <tuple>
#include <type_traits>

// The slice of the CUDA runtime API the kernels' host code uses.
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};
using uint3 = dim3;
enum cudaError_t : int {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorLaunchFailure = 719,
  cudaErrorNotSupported = 801,
};
using cudaStream_t = struct CUstream_st*;
const char* cudaGetErrorString(cudaError_t error);

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

namespace kestrel::cuda::emulation {

struct ThreadContext;
// The running emulated thread. REQUIRES: called inside a kernel.
const ThreadContext& Current();
struct ThreadContext {
  dim3 thread_idx, block_idx, block_dim, grid_dim;
};

void SyncThreads(const char* file, int line);
// Exchanges 8-byte slots between the lanes of the caller's warp.
uint64_t ShuffleXor(unsigned mask, uint64_t bits, int lane_mask, const char* file, int line);

template <typename T>
T ShflXorSync(unsigned mask, T value, int lane_mask, const char* file, int line) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8);
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  bits = ShuffleXor(mask, bits, lane_mask, file, line);
  std::memcpy(&value, &bits, sizeof(T));
  return value;
}

// Runs `body` once per thread of every block (blocks in order). Returns
// cudaErrorInvalidValue for an empty grid or more than 1024 threads per
// block, cudaErrorNotSupported for dynamic shared memory, and
// cudaErrorLaunchFailure when a barrier or shuffle check failed
// (LastLaunchError() says which).
cudaError_t LaunchBlocks(dim3 grid, dim3 block, size_t dynamic_smem_bytes,
                         const std::function<void()>& body);

// The message of the last failed launch on this host thread ("" after a
// successful one).
const std::string& LastLaunchError();

template <typename... Params, typename... Args>
cudaError_t Launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t dynamic_smem_bytes,
                   Args&&... args) {
  const std::tuple<std::decay_t<Params>...> params(static_cast<Params>(args)...);
  return LaunchBlocks(grid, block, dynamic_smem_bytes, [&] { std::apply(kernel, params); });
}

}  // namespace kestrel::cuda::emulation

#define threadIdx (::kestrel::cuda::emulation::Current().thread_idx)
#define blockIdx (::kestrel::cuda::emulation::Current().block_idx)
#define blockDim (::kestrel::cuda::emulation::Current().block_dim)
#define gridDim (::kestrel::cuda::emulation::Current().grid_dim)
#define __syncthreads() ::kestrel::cuda::emulation::SyncThreads(__FILE__, __LINE__)
#define __shfl_xor_sync(mask, value, lane_mask) \
  ::kestrel::cuda::emulation::ShflXorSync((mask), (value), (lane_mask), __FILE__, __LINE__)

inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }

#endif  // KESTREL_KERNELS_CUDA_EMULATION_CUDA_EMULATION_H_
