// The CUDA runtime API of the emulation: errors, memory, streams, events
// and the device (see cuda_emulation.h).
//
// Device memory is host memory: cudaMalloc returns a 256-byte aligned
// allocation recorded in a registry (so cudaFree of an unknown pointer and
// copies to or from host memory labelled as device memory are errors). The
// registry keys are stored complemented so LeakSanitizer does not count them
// as references: an allocation never freed shows up as a leak under ASan.
// Streams are synchronous, so copies and memsets complete before returning
// and every synchronisation is immediate. Events record steady-clock time.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <mutex>
#include <new>
#include <set>

#include "kernels/cuda/emulation/cuda_emulation.h"

namespace kestrel::cuda::emulation {
namespace {

constexpr size_t kAlignment = 256;
constexpr size_t kDefaultCapacity = size_t{16} << 30;

thread_local cudaError_t t_last_error = cudaSuccess;

struct Allocation {
  size_t bytes;
  bool device;  // cudaMalloc (else cudaMallocHost)
};

// Guarded by mu.
struct MemoryState {
  std::mutex mu;
  // ~address -> allocation; complemented so LSan does not see the pointer.
  std::map<uintptr_t, Allocation> allocations;
  size_t device_bytes = 0;
  size_t capacity = 0;
  std::set<const void*> streams;
  std::set<const void*> events;
};

MemoryState& Memory() {
  static MemoryState* m = [] {
    auto* state = new MemoryState;
    state->capacity = kDefaultCapacity;
    if (const char* bytes = std::getenv("KESTREL_CUDA_EMULATION_MEMORY_BYTES")) {
      state->capacity = std::strtoull(bytes, nullptr, 0);
    }
    return state;
  }();
  return *m;
}

uintptr_t Key(const void* p) { return ~reinterpret_cast<uintptr_t>(p); }

// Whether [p, p + bytes) lies inside one allocation of the given kind.
// REQUIRES: m.mu held.
bool Inside(MemoryState& m, const void* p, size_t bytes, bool device) {
  // Keys are complemented, so the first key >= Key(p) is the allocation
  // with the greatest start <= p.
  const auto it = m.allocations.lower_bound(Key(p));
  if (it == m.allocations.end() || it->second.device != device) return false;
  const uintptr_t start = ~it->first;
  const uintptr_t address = reinterpret_cast<uintptr_t>(p);
  return address - start <= it->second.bytes && bytes <= it->second.bytes - (address - start);
}

cudaError_t Allocate(void** ptr, size_t bytes, bool device) {
  if (ptr == nullptr) return RecordError(cudaErrorInvalidValue);
  *ptr = nullptr;
  if (bytes == 0) return cudaSuccess;
  MemoryState& m = Memory();
  std::lock_guard<std::mutex> lock(m.mu);
  if (device && bytes > m.capacity - std::min(m.capacity, m.device_bytes)) {
    return RecordError(cudaErrorMemoryAllocation);
  }
  // The exact size, so ASan reports an access one past the end.
  void* p = ::operator new(bytes, std::align_val_t{kAlignment}, std::nothrow);
  if (p == nullptr) return RecordError(cudaErrorMemoryAllocation);
  m.allocations[Key(p)] = {bytes, device};
  if (device) m.device_bytes += bytes;
  *ptr = p;
  return cudaSuccess;
}

cudaError_t Release(void* ptr, bool device) {
  if (ptr == nullptr) return cudaSuccess;
  MemoryState& m = Memory();
  std::lock_guard<std::mutex> lock(m.mu);
  const auto it = m.allocations.find(Key(ptr));
  if (it == m.allocations.end() || it->second.device != device) {
    std::fprintf(stderr, "cuda emulation: %s of %p, which %s did not return\n",
                 device ? "cudaFree" : "cudaFreeHost", ptr,
                 device ? "cudaMalloc" : "cudaMallocHost");
    return RecordError(cudaErrorInvalidValue);
  }
  if (device) m.device_bytes -= it->second.bytes;
  m.allocations.erase(it);
  ::operator delete(ptr, std::align_val_t{kAlignment});
  return cudaSuccess;
}

// Checks that a copy's pointers are what `kind` says. REQUIRES: m.mu held.
bool CopyDirectionValid(MemoryState& m, void* dst, const void* src, size_t bytes,
                        cudaMemcpyKind kind) {
  switch (kind) {
    case cudaMemcpyHostToHost: return !Inside(m, dst, bytes, true) && !Inside(m, src, bytes, true);
    case cudaMemcpyHostToDevice: return Inside(m, dst, bytes, true) && !Inside(m, src, bytes, true);
    case cudaMemcpyDeviceToHost: return !Inside(m, dst, bytes, true) && Inside(m, src, bytes, true);
    case cudaMemcpyDeviceToDevice: return Inside(m, dst, bytes, true) && Inside(m, src, bytes, true);
    case cudaMemcpyDefault: return true;
  }
  return false;
}

bool StreamValid(cudaStream_t stream) {
  if (stream == nullptr) return true;
  MemoryState& m = Memory();
  std::lock_guard<std::mutex> lock(m.mu);
  return m.streams.count(stream) != 0;
}

struct Event {
  bool recorded = false;
  std::chrono::steady_clock::time_point time;
};

Event* FindEvent(cudaEvent_t event) {
  MemoryState& m = Memory();
  std::lock_guard<std::mutex> lock(m.mu);
  return m.events.count(event) != 0 ? reinterpret_cast<Event*>(event) : nullptr;
}

}  // namespace

cudaError_t RecordError(cudaError_t error) {
  if (error != cudaSuccess) t_last_error = error;
  return error;
}

void SetMemoryCapacity(size_t bytes) {
  MemoryState& m = Memory();
  std::lock_guard<std::mutex> lock(m.mu);
  m.capacity = bytes;
}

size_t AllocatedBytes() {
  MemoryState& m = Memory();
  std::lock_guard<std::mutex> lock(m.mu);
  return m.device_bytes;
}

}  // namespace kestrel::cuda::emulation

using kestrel::cuda::emulation::RecordError;

const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInvalidDeviceFunction: return "invalid device function";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorNotSupported: return "operation not supported";
    case cudaErrorUnknown: return "unknown error";
  }
  return "unrecognized error code";
}

const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorInvalidDeviceFunction: return "cudaErrorInvalidDeviceFunction";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    case cudaErrorUnknown: return "cudaErrorUnknown";
  }
  return "unrecognized error code";
}

cudaError_t cudaGetLastError() {
  const cudaError_t error = kestrel::cuda::emulation::t_last_error;
  kestrel::cuda::emulation::t_last_error = cudaSuccess;
  return error;
}

cudaError_t cudaPeekAtLastError() { return kestrel::cuda::emulation::t_last_error; }

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  return kestrel::cuda::emulation::Allocate(ptr, bytes, true);
}
cudaError_t cudaFree(void* ptr) { return kestrel::cuda::emulation::Release(ptr, true); }
cudaError_t cudaMallocHost(void** ptr, size_t bytes) {
  return kestrel::cuda::emulation::Allocate(ptr, bytes, false);
}
cudaError_t cudaFreeHost(void* ptr) { return kestrel::cuda::emulation::Release(ptr, false); }

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (bytes == 0) return cudaSuccess;
  if (dst == nullptr || src == nullptr) return RecordError(cudaErrorInvalidValue);
  auto& m = kestrel::cuda::emulation::Memory();
  {
    std::lock_guard<std::mutex> lock(m.mu);
    if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault) {
      return RecordError(cudaErrorInvalidMemcpyDirection);
    }
    if (!kestrel::cuda::emulation::CopyDirectionValid(m, dst, src, bytes, kind)) {
      std::fprintf(stderr, "cuda emulation: cudaMemcpy of %zu bytes from %p to %p: the pointers "
                   "are not what kind %d says (or the range leaves its allocation)\n",
                   bytes, src, dst, static_cast<int>(kind));
      return RecordError(cudaErrorInvalidValue);
    }
  }
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  if (!kestrel::cuda::emulation::StreamValid(stream)) {
    return RecordError(cudaErrorInvalidResourceHandle);
  }
  return cudaMemcpy(dst, src, bytes, kind);
}

cudaError_t cudaMemset(void* ptr, int value, size_t bytes) {
  if (bytes == 0) return cudaSuccess;
  auto& m = kestrel::cuda::emulation::Memory();
  {
    std::lock_guard<std::mutex> lock(m.mu);
    if (!kestrel::cuda::emulation::Inside(m, ptr, bytes, true)) {
      std::fprintf(stderr, "cuda emulation: cudaMemset of %zu bytes at %p, not cudaMalloc'ed "
                   "memory\n", bytes, ptr);
      return RecordError(cudaErrorInvalidValue);
    }
  }
  std::memset(ptr, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t stream) {
  if (!kestrel::cuda::emulation::StreamValid(stream)) {
    return RecordError(cudaErrorInvalidResourceHandle);
  }
  return cudaMemset(ptr, value, bytes);
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  if (free_bytes == nullptr || total_bytes == nullptr) return RecordError(cudaErrorInvalidValue);
  auto& m = kestrel::cuda::emulation::Memory();
  std::lock_guard<std::mutex> lock(m.mu);
  *total_bytes = m.capacity;
  *free_bytes = m.capacity - std::min(m.capacity, m.device_bytes);
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, 0); }

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags) {
  if (stream == nullptr || flags > cudaStreamNonBlocking) return RecordError(cudaErrorInvalidValue);
  // A distinct address per stream; the emulation keeps nothing in it.
  *stream = reinterpret_cast<cudaStream_t>(new char);
  auto& m = kestrel::cuda::emulation::Memory();
  std::lock_guard<std::mutex> lock(m.mu);
  m.streams.insert(*stream);
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  auto& m = kestrel::cuda::emulation::Memory();
  std::lock_guard<std::mutex> lock(m.mu);
  if (stream == nullptr || m.streams.erase(stream) == 0) {
    return RecordError(cudaErrorInvalidResourceHandle);
  }
  delete reinterpret_cast<char*>(stream);
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  return kestrel::cuda::emulation::StreamValid(stream)
             ? cudaSuccess
             : RecordError(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaStreamQuery(cudaStream_t stream) { return cudaStreamSynchronize(stream); }

cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }

cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, 0); }

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags) {
  if (event == nullptr || (flags & ~7u) != 0) return RecordError(cudaErrorInvalidValue);
  *event = reinterpret_cast<cudaEvent_t>(new kestrel::cuda::emulation::Event);
  auto& m = kestrel::cuda::emulation::Memory();
  std::lock_guard<std::mutex> lock(m.mu);
  m.events.insert(*event);
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  auto* e = kestrel::cuda::emulation::FindEvent(event);
  if (e == nullptr || !kestrel::cuda::emulation::StreamValid(stream)) {
    return RecordError(cudaErrorInvalidResourceHandle);
  }
  e->time = std::chrono::steady_clock::now();
  e->recorded = true;
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  return kestrel::cuda::emulation::FindEvent(event) != nullptr
             ? cudaSuccess
             : RecordError(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaEventQuery(cudaEvent_t event) { return cudaEventSynchronize(event); }

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (ms == nullptr) return RecordError(cudaErrorInvalidValue);
  auto* s = kestrel::cuda::emulation::FindEvent(start);
  auto* e = kestrel::cuda::emulation::FindEvent(end);
  if (s == nullptr || e == nullptr || !s->recorded || !e->recorded) {
    return RecordError(cudaErrorInvalidResourceHandle);
  }
  *ms = std::chrono::duration<float, std::milli>(e->time - s->time).count();
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  auto& m = kestrel::cuda::emulation::Memory();
  std::lock_guard<std::mutex> lock(m.mu);
  if (event == nullptr || m.events.erase(event) == 0) {
    return RecordError(cudaErrorInvalidResourceHandle);
  }
  delete reinterpret_cast<kestrel::cuda::emulation::Event*>(event);
  return cudaSuccess;
}

cudaError_t cudaGetDeviceCount(int* count) {
  if (count == nullptr) return RecordError(cudaErrorInvalidValue);
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  return device == 0 ? cudaSuccess : RecordError(cudaErrorInvalidDevice);
}

cudaError_t cudaGetDevice(int* device) {
  if (device == nullptr) return RecordError(cudaErrorInvalidValue);
  *device = 0;
  return cudaSuccess;
}

// The emulated device looks like an H200 (sm_90, 132 SMs).
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (value == nullptr) return RecordError(cudaErrorInvalidValue);
  if (device != 0) return RecordError(cudaErrorInvalidDevice);
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = 48 * 1024; return cudaSuccess;
    case cudaDevAttrWarpSize: *value = 32; return cudaSuccess;
    case cudaDevAttrMultiProcessorCount: *value = 132; return cudaSuccess;
    case cudaDevAttrL2CacheSize: *value = 50 * 1024 * 1024; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMajor: *value = 9; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = 227 * 1024; return cudaSuccess;
  }
  return RecordError(cudaErrorInvalidValue);
}
