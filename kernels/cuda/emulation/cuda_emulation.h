// A CPU emulation of the CUDA execution model and of the slice of the CUDA
// runtime API the project uses, so the .cu kernels compile with the host
// compiler and their tests run without a GPU. Included only through
// kernels/cuda/cuda_compat.h in targets that define KESTREL_CUDA_EMULATION;
// the nvcc build never sees it.
//
// Execution: launches are serialised by one lock and run to completion
// (streams are synchronous). Blocks run one after another; each CUDA thread
// of a block is a fiber (fiber.h) on the launching host thread, and a fiber
// runs until it reaches a barrier or warp operation or leaves the kernel.
// The run order decides which runnable fiber runs next and the order of the
// blocks: env KESTREL_CUDA_EMULATION_ORDER = forward | reverse | random
// (seed KESTREL_CUDA_EMULATION_SEED), or SetRunOrder(). cuda_kernel_test
// runs every kernel test under all three.
//
// Checks: __syncthreads() is a block barrier that records file:line; a
// thread at a different barrier, or one that left the kernel while others
// wait, fails the launch (cudaErrorLaunchFailure, message in
// LastLaunchError() and on stderr) instead of hanging. Warp operations
// (__syncwarp, shuffles, votes) are barriers of the lanes named in their
// mask; a mask naming a lane that left, waits elsewhere, or uses another
// mask fails the launch. A shuffle reading a lane outside the mask returns
// NaN bits. Dynamic shared memory is filled with 0xff bytes (NaN for every
// float type) before each block, and so are static __shared__ variables
// declared in .cu files (see cuda_emulation.cc). Launches with more than
// 48 KiB of dynamic shared memory need cudaFuncSetAttribute first, as on
// a GPU. The device looks like an H200: 132 SMs, 227 KiB opt-in shared
// memory, 16 GiB of memory (KESTREL_CUDA_EMULATION_MEMORY_BYTES or
// SetMemoryCapacity()). Fiber stacks are 64 KiB (more under sanitizers;
// KESTREL_CUDA_EMULATION_STACK_BYTES).
//
// Sanitizers: under ASan a kernel's out-of-bounds access to device or
// dynamic shared memory is reported, and so is device memory never freed;
// under TSan, races between emulated threads are (barriers, warp operations
// and relaxed atomics are the only orderings).
//
// Not emulated: tensor-core instructions, cp.async, inline PTX, cooperative
// groups, concurrency between streams or blocks (so races between blocks go
// unseen), sticky errors, performance.
#ifndef KESTREL_KERNELS_CUDA_EMULATION_CUDA_EMULATION_H_
#define KESTREL_KERNELS_CUDA_EMULATION_CUDA_EMULATION_H_

#include <atomic>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <math.h>
#include <string>
#include <tuple>
#include <type_traits>

#include "kernels/cuda/emulation/cuda_fp16_emulation.h"

// ---------------------------------------------------------------------------
// Runtime API types.

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return {x, y, z}; }
};

// Values as in CUDA's driver_types.h.
enum cudaError_t : int {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorInvalidDeviceFunction = 98,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchOutOfResources = 701,
  cudaErrorLaunchFailure = 719,
  cudaErrorNotSupported = 801,
  cudaErrorUnknown = 999,
};
using cudaError = cudaError_t;

enum cudaMemcpyKind : int {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};

enum cudaDeviceAttr : int {
  cudaDevAttrMaxThreadsPerBlock = 1,
  cudaDevAttrMaxSharedMemoryPerBlock = 8,
  cudaDevAttrWarpSize = 10,
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrL2CacheSize = 38,
  cudaDevAttrComputeCapabilityMajor = 75,
  cudaDevAttrComputeCapabilityMinor = 76,
  cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};

enum cudaFuncAttribute : int {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
};

using cudaStream_t = struct CUstream_st*;
using cudaEvent_t = struct CUevent_st*;
constexpr unsigned cudaStreamDefault = 0, cudaStreamNonBlocking = 1;
constexpr unsigned cudaEventDefault = 0, cudaEventDisableTiming = 2;

// ---------------------------------------------------------------------------
// Runtime API (cuda_emulation_runtime.cc). Device memory is host memory.

const char* cudaGetErrorString(cudaError_t error);
const char* cudaGetErrorName(cudaError_t error);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();

cudaError_t cudaMalloc(void** ptr, size_t bytes);
template <typename T>
cudaError_t cudaMalloc(T** ptr, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(ptr), bytes);
}
cudaError_t cudaFree(void* ptr);
cudaError_t cudaMallocHost(void** ptr, size_t bytes);
template <typename T>
cudaError_t cudaMallocHost(T** ptr, size_t bytes) {
  return cudaMallocHost(reinterpret_cast<void**>(ptr), bytes);
}
cudaError_t cudaFreeHost(void* ptr);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream = nullptr);
cudaError_t cudaMemset(void* ptr, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t stream = nullptr);
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);

cudaError_t cudaStreamCreate(cudaStream_t* stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaStreamQuery(cudaStream_t stream);
cudaError_t cudaDeviceSynchronize();

cudaError_t cudaEventCreate(cudaEvent_t* event);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventQuery(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaEventDestroy(cudaEvent_t event);

cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);

namespace kestrel::cuda::emulation {
cudaError_t FuncSetAttribute(const void* kernel, cudaFuncAttribute attr, int value);
}  // namespace kestrel::cuda::emulation

template <typename Kernel>
cudaError_t cudaFuncSetAttribute(Kernel* kernel, cudaFuncAttribute attr, int value) {
  return ::kestrel::cuda::emulation::FuncSetAttribute(reinterpret_cast<const void*>(kernel), attr,
                                                      value);
}

// ---------------------------------------------------------------------------
// The emulation's own controls and the kernel-side machinery.

namespace kestrel::cuda::emulation {

enum class RunOrder { kForward, kReverse, kRandom };

// Sets the run order (and the seed of kRandom) for later launches from any
// host thread. The default comes from KESTREL_CUDA_EMULATION_ORDER and
// KESTREL_CUDA_EMULATION_SEED (forward, seed 1).
void SetRunOrder(RunOrder order, uint64_t seed = 1);
RunOrder GetRunOrder();
const char* RunOrderName(RunOrder order);

// The emulated device's memory capacity for cudaMalloc and cudaMemGetInfo
// (default: KESTREL_CUDA_EMULATION_MEMORY_BYTES, else 16 GiB).
void SetMemoryCapacity(size_t bytes);
// Bytes currently allocated by cudaMalloc.
size_t AllocatedBytes();

// The message of the last failed launch on this host thread ("" after a
// successful one).
const std::string& LastLaunchError();

// Records a runtime API error as the host thread's last error; returns it.
cudaError_t RecordError(cudaError_t error);

// The running emulated thread. Only valid inside a kernel.
struct ThreadState {
  uint3 thread_idx;
  uint3 block_idx;
  dim3 block_dim;
  dim3 grid_dim;
};
extern thread_local const ThreadState* t_thread;
const ThreadState& OutsideKernel();  // aborts with a message
inline const ThreadState& Current() { return t_thread != nullptr ? *t_thread : OutsideKernel(); }

unsigned char* DynamicSharedMemory();
void SyncThreads(const char* file, int line);

enum class WarpOp : uint8_t { kSync, kShuffle, kVote };
enum class ShuffleMode : uint8_t { kIndex, kUp, kDown, kXor, kNone };
// One lane's part in a warp operation; returns what the lane receives (the
// partner's 8-byte slot for shuffles, the ballot of `bits != 0` for votes).
uint64_t WarpExchange(WarpOp op, unsigned mask, uint64_t bits, ShuffleMode mode, int lane_arg,
                      int width, const char* file, int line);

template <typename T>
T Shuffle(unsigned mask, T value, ShuffleMode mode, int lane_arg, int width, const char* file,
          int line) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8,
                "shuffles move values of at most 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  bits = WarpExchange(WarpOp::kShuffle, mask, bits, mode, lane_arg, width, file, line);
  std::memcpy(&value, &bits, sizeof(T));
  return value;
}

// Registers a static __shared__ variable so it is poisoned before each
// block (see cuda_emulation.cc); returns true.
bool RegisterStaticShared(void* address, size_t bytes);

// Runs `body(context)` once per thread of every block. Returns
// cudaErrorInvalidConfiguration for bad grid or block shapes,
// cudaErrorInvalidValue for too much dynamic shared memory, and
// cudaErrorLaunchFailure when a barrier or warp check failed.
cudaError_t LaunchBlocks(const void* kernel, dim3 grid, dim3 block, size_t dynamic_smem_bytes,
                         void (*body)(void*), void* context);

template <typename... Params, typename... Args>
cudaError_t Launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t dynamic_smem_bytes,
                   Args&&... args) {
  struct Call {
    void (*kernel)(Params...);
    std::tuple<std::decay_t<Params>...> params;
  } call{kernel, std::tuple<std::decay_t<Params>...>(static_cast<Params>(args)...)};
  const cudaError_t error = LaunchBlocks(
      reinterpret_cast<const void*>(kernel), grid, block, dynamic_smem_bytes,
      [](void* context) {
        Call* c = static_cast<Call*>(context);
        std::apply(c->kernel, c->params);
      },
      &call);
  // launch_kernel returns cudaGetLastError() after a real launch, which
  // consumes the error: do the same.
  (void)cudaGetLastError();
  return error;
}

}  // namespace kestrel::cuda::emulation

// ---------------------------------------------------------------------------
// Kernel-side language.

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
#define __shared__ static
// Appended by the emulated build's copy of a .cu after each single-variable
// __shared__ declaration (bazel/cuda.bzl): registers it once, at its first
// execution, for poisoning before every block.
#define KESTREL_REGISTER_STATIC_SHARED(name)                            \
  [[maybe_unused]] static const bool kestrel_shared_registered_##name = \
      ::kestrel::cuda::emulation::RegisterStaticShared(&(name), sizeof(name))
#define __constant__ static

#define threadIdx (::kestrel::cuda::emulation::Current().thread_idx)
#define blockIdx (::kestrel::cuda::emulation::Current().block_idx)
#define blockDim (::kestrel::cuda::emulation::Current().block_dim)
#define gridDim (::kestrel::cuda::emulation::Current().grid_dim)
constexpr int warpSize = 32;

#define __syncthreads() ::kestrel::cuda::emulation::SyncThreads(__FILE__, __LINE__)
#define __syncwarp(...) ::kestrel::cuda::emulation::SyncWarpAt(__FILE__, __LINE__ __VA_OPT__(, ) __VA_ARGS__)
#define __shfl_sync(mask, value, lane, ...)                                            \
  ::kestrel::cuda::emulation::Shuffle((mask), (value),                               \
                                      ::kestrel::cuda::emulation::ShuffleMode::kIndex, \
                                      (lane), ::kestrel::cuda::emulation::Width(__VA_ARGS__), \
                                      __FILE__, __LINE__)
#define __shfl_up_sync(mask, value, delta, ...)                                      \
  ::kestrel::cuda::emulation::Shuffle((mask), (value),                               \
                                      ::kestrel::cuda::emulation::ShuffleMode::kUp,  \
                                      (delta), ::kestrel::cuda::emulation::Width(__VA_ARGS__), \
                                      __FILE__, __LINE__)
#define __shfl_down_sync(mask, value, delta, ...)                                     \
  ::kestrel::cuda::emulation::Shuffle((mask), (value),                                \
                                      ::kestrel::cuda::emulation::ShuffleMode::kDown, \
                                      (delta), ::kestrel::cuda::emulation::Width(__VA_ARGS__), \
                                      __FILE__, __LINE__)
#define __shfl_xor_sync(mask, value, lane_mask, ...)                                 \
  ::kestrel::cuda::emulation::Shuffle((mask), (value),                               \
                                      ::kestrel::cuda::emulation::ShuffleMode::kXor, \
                                      (lane_mask), ::kestrel::cuda::emulation::Width(__VA_ARGS__), \
                                      __FILE__, __LINE__)
#define __ballot_sync(mask, predicate)                                                       \
  static_cast<unsigned>(::kestrel::cuda::emulation::WarpExchange(                          \
      ::kestrel::cuda::emulation::WarpOp::kVote, (mask), (predicate) ? 1u : 0u,             \
      ::kestrel::cuda::emulation::ShuffleMode::kNone, 0, 32, __FILE__, __LINE__))
#define __any_sync(mask, predicate) (__ballot_sync((mask), (predicate)) != 0u ? 1 : 0)
#define __all_sync(mask, predicate) \
  ::kestrel::cuda::emulation::AllOf((mask), __ballot_sync((mask), (predicate)))

namespace kestrel::cuda::emulation {
constexpr int Width(int width = 32) { return width; }
inline void SyncWarpAt(const char* file, int line, unsigned mask = 0xffffffffu) {
  WarpExchange(WarpOp::kSync, mask, 0, ShuffleMode::kNone, 0, 32, file, line);
}
inline int AllOf(unsigned mask, unsigned ballot) { return (ballot & mask) == mask ? 1 : 0; }
}  // namespace kestrel::cuda::emulation

// Atomics: relaxed, as on the GPU. They return the old value.
namespace kestrel::cuda::emulation {
template <typename T>
std::atomic_ref<T> AtomicRef(T* address) {
  return std::atomic_ref<T>(*address);
}
}  // namespace kestrel::cuda::emulation

#define KESTREL_EMULATED_ATOMIC_ADD(T)                                                 \
  inline T atomicAdd(T* address, T value) {                                            \
    return ::kestrel::cuda::emulation::AtomicRef(address).fetch_add(value,             \
                                                                    std::memory_order_relaxed); \
  }                                                                                    \
  inline T atomicSub(T* address, T value) {                                            \
    return ::kestrel::cuda::emulation::AtomicRef(address).fetch_sub(value,             \
                                                                    std::memory_order_relaxed); \
  }
KESTREL_EMULATED_ATOMIC_ADD(int)
KESTREL_EMULATED_ATOMIC_ADD(unsigned)
KESTREL_EMULATED_ATOMIC_ADD(unsigned long long)
KESTREL_EMULATED_ATOMIC_ADD(float)
#undef KESTREL_EMULATED_ATOMIC_ADD

#define KESTREL_EMULATED_ATOMIC_MINMAX(T)                                                \
  inline T atomicMax(T* address, T value) {                                              \
    auto ref = ::kestrel::cuda::emulation::AtomicRef(address);                           \
    T old = ref.load(std::memory_order_relaxed);                                         \
    while (old < value &&                                                                \
           !ref.compare_exchange_weak(old, value, std::memory_order_relaxed)) {          \
    }                                                                                    \
    return old;                                                                          \
  }                                                                                      \
  inline T atomicMin(T* address, T value) {                                              \
    auto ref = ::kestrel::cuda::emulation::AtomicRef(address);                           \
    T old = ref.load(std::memory_order_relaxed);                                         \
    while (value < old &&                                                                \
           !ref.compare_exchange_weak(old, value, std::memory_order_relaxed)) {          \
    }                                                                                    \
    return old;                                                                          \
  }
KESTREL_EMULATED_ATOMIC_MINMAX(int)
KESTREL_EMULATED_ATOMIC_MINMAX(unsigned)
KESTREL_EMULATED_ATOMIC_MINMAX(unsigned long long)
#undef KESTREL_EMULATED_ATOMIC_MINMAX

#define KESTREL_EMULATED_ATOMIC_CAS_EXCH(T)                                               \
  inline T atomicCAS(T* address, T compare, T value) {                                    \
    ::kestrel::cuda::emulation::AtomicRef(address).compare_exchange_strong(               \
        compare, value, std::memory_order_relaxed);                                       \
    return compare;                                                                       \
  }                                                                                       \
  inline T atomicExch(T* address, T value) {                                              \
    return ::kestrel::cuda::emulation::AtomicRef(address).exchange(value,                 \
                                                                   std::memory_order_relaxed); \
  }
KESTREL_EMULATED_ATOMIC_CAS_EXCH(int)
KESTREL_EMULATED_ATOMIC_CAS_EXCH(unsigned)
KESTREL_EMULATED_ATOMIC_CAS_EXCH(unsigned long long)
#undef KESTREL_EMULATED_ATOMIC_CAS_EXCH
inline float atomicExch(float* address, float value) {
  return ::kestrel::cuda::emulation::AtomicRef(address).exchange(value, std::memory_order_relaxed);
}

// Vector types, aligned as in CUDA's vector_types.h.
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct float3 { float x, y, z; };
struct alignas(8) int2 { int x, y; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float3 make_float3(float x, float y, float z) { return {x, y, z}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline int2 make_int2(int x, int y) { return {x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return {x, y, z}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }

inline float2 __bfloat1622float2(__nv_bfloat162 v) { return {float(v.x), float(v.y)}; }
inline float2 __half22float2(__half2 v) { return {float(v.x), float(v.y)}; }

// Math. expf, logf, sqrtf, fmaxf, ... are the C library's (math.h).
using std::isinf;
using std::isnan;
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __sinf(float x) { return std::sin(x); }
inline float __cosf(float x) { return std::cos(x); }
inline float __powf(float x, float y) { return std::pow(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : (x == x ? x : 0.0f)); }
inline int __float_as_int(float x) { return std::bit_cast<int>(x); }
inline float __int_as_float(int x) { return std::bit_cast<float>(x); }
inline unsigned __float_as_uint(float x) { return std::bit_cast<unsigned>(x); }
inline float __uint_as_float(unsigned x) { return std::bit_cast<float>(x); }
inline int __popc(unsigned x) { return std::popcount(x); }
inline int __popcll(unsigned long long x) { return std::popcount(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __clz(int x) { return std::countl_zero(static_cast<unsigned>(x)); }
inline unsigned __brev(unsigned x) {
  unsigned r = 0;
  for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}
template <typename T>
T __ldg(const T* address) {
  return *address;
}

#endif  // KESTREL_KERNELS_CUDA_EMULATION_CUDA_EMULATION_H_
