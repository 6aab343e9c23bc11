// The memory side of a backend: allocation, copies between host and device
// memory, and synchronization. The model runner keeps everything it computes
// with (weights, activations, the KV pool, RoPE tables, step metadata) in
// DeviceBuffers, so the same runner drives the CPU backend (where a device
// buffer is host memory) and a GPU backend (where it is not).
//
//   ASSIGN_OR_RETURN(DeviceBuffer ids, device.Allocate(n * sizeof(int32_t), "token ids"));
//   RETURN_IF_ERROR(device.CopyToDevice(ids.data(), host_ids.data(), ids.size()));
//
// Copies and memsets are ordered on the device's stream: a later op sees
// them, and the host may reuse the source of a CopyToDevice as soon as it
// returns. CopyToHost returns once the data is on the host (it synchronizes).
#ifndef KESTREL_KERNELS_DEVICE_H_
#define KESTREL_KERNELS_DEVICE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kestrel::kernels {

class Device;

// One allocation on a Device, freed by its destructor. Move-only. The
// device must outlive the buffer.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer();

  // Device address (a host address on a host-memory device); null when empty.
  void* data() const { return data_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  size_t size() const { return size_; }
  bool empty() const { return data_ == nullptr; }

 private:
  friend class Device;
  DeviceBuffer(Device* device, void* data, size_t size)
      : device_(device), data_(data), size_(size) {}
  void Release();

  Device* device_ = nullptr;  // not owned
  void* data_ = nullptr;
  size_t size_ = 0;
};

// Thread-compatible: one worker thread drives a device (its stream).
class Device {
 public:
  virtual ~Device() = default;

  // "cpu", "cuda:0", ... for logs and GetServerInfo.
  virtual std::string name() const = 0;

  // True when device memory is host memory, so the runner may use host data
  // (checkpoint weights) in place instead of uploading a copy.
  virtual bool host_memory() const = 0;

  // At least `bytes` of device memory, aligned to 64 bytes (256 on GPUs),
  // contents undefined. Zero bytes gives an empty buffer. ResourceExhausted
  // names `what` and the size when the device is out of memory.
  absl::StatusOr<DeviceBuffer> Allocate(size_t bytes, std::string_view what);

  // Stream-ordered copies; the ranges must not overlap.
  virtual absl::Status CopyToDevice(void* dst, const void* src, size_t bytes) = 0;
  virtual absl::Status CopyOnDevice(void* dst, const void* src, size_t bytes) = 0;
  // Waits for the stream, then copies to host memory.
  virtual absl::Status CopyToHost(void* dst, const void* src, size_t bytes) = 0;
  virtual absl::Status Memset(void* dst, uint8_t value, size_t bytes) = 0;

  // Waits until everything issued on the stream has finished. A fault of an
  // earlier asynchronous op (an illegal address on a GPU) is reported here.
  virtual absl::Status Synchronize() = 0;

  // The device's memory: what allocations can still get and the total, for
  // sizing the KV pool (ModelRunner::Options::memory_utilization).
  struct MemoryInfo {
    uint64_t free_bytes = 0;
    uint64_t total_bytes = 0;
  };
  virtual absl::StatusOr<MemoryInfo> GetMemoryInfo() const = 0;

 protected:
  // The allocation primitives behind Allocate and ~DeviceBuffer.
  virtual absl::StatusOr<void*> AllocateRaw(size_t bytes) = 0;
  virtual void FreeRaw(void* data, size_t bytes) = 0;

 private:
  friend class DeviceBuffer;
};

}  // namespace kestrel::kernels

#endif  // KESTREL_KERNELS_DEVICE_H_
