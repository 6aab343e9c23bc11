#include "kernels/cuda/cuda_backend.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "kernels/cuda/cuda_compat.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device_error.h"

namespace kestrel::cuda {
namespace {

// Host->device copies up to this size go through the pinned staging area
// (asynchronous: the host returns at once and may reuse its source); larger
// ones (weights at load time) are plain stream copies from pageable memory.
constexpr size_t kStagingBytes = size_t{8} << 20;
constexpr size_t kStagedCopyMax = kStagingBytes / 4;

std::string DescribeError(const DeviceError& e) {
  switch (static_cast<DeviceErrorCode>(e.code)) {
    case DeviceErrorCode::kTokenId:
      return absl::StrCat("token id ", e.value, " at index ", e.index,
                          " is outside the vocabulary [0, ", e.limit, ")");
    case DeviceErrorCode::kKvSlot:
      return absl::StrCat("KV slot ", e.value, " of token ", e.index, " is outside [-1, ", e.limit,
                          ")");
    case DeviceErrorCode::kBlockId:
      return absl::StrCat("KV block id ", e.value, " at index ", e.index,
                          " is outside the pool's ", e.limit, " blocks");
    case DeviceErrorCode::kRowIndex:
      return absl::StrCat("row index ", e.value, " at index ", e.index, " is outside [0, ",
                          e.limit, ")");
    case DeviceErrorCode::kSampleToken:
      return absl::StrCat("sampling adjustment token ", e.value, " at index ", e.index,
                          " is outside the vocabulary [0, ", e.limit, ")");
    case DeviceErrorCode::kDraftToken:  // the CPU sampler's message
      return absl::StrCat("sample row ", e.index, ": draft_token ", e.value, " is outside [-1, ",
                          e.limit, ")");
    case DeviceErrorCode::kNone:
      break;
  }
  return absl::StrCat("kernel error code ", e.code, " at index ", e.index, " (value ", e.value,
                      ", limit ", e.limit, ")");
}

class CudaDevice final : public kernels::Device {
 public:
  static absl::StatusOr<std::unique_ptr<CudaDevice>> Create(int ordinal) {
    int count = 0;
    const cudaError_t count_error = cudaGetDeviceCount(&count);
    if (count_error != cudaSuccess || count == 0) {
      return absl::UnavailableError(absl::StrCat(
          "--device=cuda: no usable CUDA device (",
          count_error != cudaSuccess ? cudaGetErrorString(count_error) : "the driver reports none",
          ")"));
    }
    if (ordinal < 0 || ordinal >= count) {
      return absl::UnavailableError(absl::StrCat("CUDA device ", ordinal,
                                                 " does not exist: this machine has ", count));
    }
    std::unique_ptr<CudaDevice> d(new CudaDevice(ordinal));
    RETURN_IF_ERROR(CudaStatus(cudaSetDevice(ordinal), d->name()));
    RETURN_IF_ERROR(CudaStatus(cudaStreamCreate(&d->stream_), "creating the stream"));
    void* staging = nullptr;
    RETURN_IF_ERROR(CudaStatus(cudaMallocHost(&staging, kStagingBytes), "pinned staging"));
    d->staging_ = static_cast<char*>(staging);
    void* error_host = nullptr;
    RETURN_IF_ERROR(CudaStatus(cudaMallocHost(&error_host, sizeof(DeviceError)),
                               "pinned error report"));
    d->error_host_ = static_cast<DeviceError*>(error_host);
    void* error_device = nullptr;
    RETURN_IF_ERROR(CudaStatus(cudaMalloc(&error_device, sizeof(DeviceError)), "error report"));
    d->error_device_ = static_cast<DeviceError*>(error_device);
    RETURN_IF_ERROR(CudaStatus(cudaMemset(d->error_device_, 0, sizeof(DeviceError)),
                               "error report"));
    return d;
  }

  ~CudaDevice() override {
    if (stream_ != nullptr) (void)cudaStreamSynchronize(stream_);
    if (error_device_ != nullptr) (void)cudaFree(error_device_);
    if (error_host_ != nullptr) (void)cudaFreeHost(error_host_);
    if (staging_ != nullptr) (void)cudaFreeHost(staging_);
    if (stream_ != nullptr) (void)cudaStreamDestroy(stream_);
  }

  std::string name() const override { return absl::StrCat("cuda:", ordinal_); }
  bool host_memory() const override { return false; }

  absl::Status CopyToDevice(void* dst, const void* src, size_t bytes) override {
    if (bytes == 0) return absl::OkStatus();
    if (bytes <= kStagedCopyMax) {
      if (staging_used_ + bytes > kStagingBytes) {
        // Every staged copy must have left the staging area before it is
        // reused: wait for the stream (rare: the area holds many steps'
        // metadata between synchronizations).
        RETURN_IF_ERROR(Synchronize());
      }
      char* stage = staging_ + staging_used_;
      staging_used_ += (bytes + 255) / 256 * 256;
      std::memcpy(stage, src, bytes);
      return CudaStatus(cudaMemcpyAsync(dst, stage, bytes, cudaMemcpyHostToDevice, stream_),
                        "copy to device");
    }
    // Pageable source: the copy has finished reading it when this returns.
    RETURN_IF_ERROR(CudaStatus(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_),
                               "copy to device"));
    return CudaStatus(cudaStreamSynchronize(stream_), "copy to device");
  }

  absl::Status CopyOnDevice(void* dst, const void* src, size_t bytes) override {
    if (bytes == 0) return absl::OkStatus();
    return CudaStatus(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_),
                      "copy on device");
  }

  absl::Status CopyToHost(void* dst, const void* src, size_t bytes) override {
    if (bytes == 0) return Synchronize();
    // Small copies land in pinned memory (a DMA straight into it). Stream
    // order makes this safe even while staged uploads are still queued: they
    // have read the staging area before this copy writes it.
    const bool staged = bytes <= kStagingBytes;
    RETURN_IF_ERROR(CudaStatus(cudaMemcpyAsync(staged ? staging_ : dst, src, bytes,
                                               cudaMemcpyDeviceToHost, stream_),
                               "copy to host"));
    RETURN_IF_ERROR(Synchronize());
    if (staged) std::memcpy(dst, staging_, bytes);
    return absl::OkStatus();
  }

  absl::Status Memset(void* dst, uint8_t value, size_t bytes) override {
    if (bytes == 0) return absl::OkStatus();
    return CudaStatus(cudaMemsetAsync(dst, value, bytes, stream_), "memset");
  }

  // Waits for the stream, then reports (and clears) the first error a
  // kernel found in device data since the last synchronization.
  absl::Status Synchronize() override {
    RETURN_IF_ERROR(CudaStatus(cudaMemcpyAsync(error_host_, error_device_, sizeof(DeviceError),
                                               cudaMemcpyDeviceToHost, stream_),
                               "error report"));
    RETURN_IF_ERROR(CudaStatus(cudaStreamSynchronize(stream_), "synchronize"));
    staging_used_ = 0;
    if (error_host_->code != 0) {
      const DeviceError error = *error_host_;
      RETURN_IF_ERROR(CudaStatus(cudaMemsetAsync(error_device_, 0, sizeof(DeviceError), stream_),
                                 "error report"));
      return absl::InvalidArgumentError(absl::StrCat(name(), ": ", DescribeError(error)));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<MemoryInfo> GetMemoryInfo() const override {
    size_t free_bytes = 0, total_bytes = 0;
    RETURN_IF_ERROR(CudaStatus(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo"));
    return MemoryInfo{.free_bytes = free_bytes, .total_bytes = total_bytes};
  }

  cudaStream_t stream() const { return stream_; }
  DeviceError* error() const { return error_device_; }
  int ordinal() const { return ordinal_; }

 protected:
  absl::StatusOr<void*> AllocateRaw(size_t bytes) override {
    void* data = nullptr;
    RETURN_IF_ERROR(CudaStatus(cudaMalloc(&data, bytes), "cudaMalloc"));
    return data;
  }
  void FreeRaw(void* data, size_t) override {
    // cudaFree synchronizes the device, so no queued kernel still uses it.
    (void)cudaFree(data);
  }

 private:
  explicit CudaDevice(int ordinal) : ordinal_(ordinal) {}

  int ordinal_ = 0;
  cudaStream_t stream_ = nullptr;
  char* staging_ = nullptr;  // pinned, kStagingBytes
  size_t staging_used_ = 0;  // bytes handed to copies since the last synchronization
  DeviceError* error_host_ = nullptr;    // pinned
  DeviceError* error_device_ = nullptr;  // written by kernels
};

class CudaBackend final : public kernels::Backend {
 public:
  CudaBackend(std::unique_ptr<CudaDevice> device, std::unique_ptr<CudaOps> ops,
              std::string description)
      : device_(std::move(device)), ops_(std::move(ops)), description_(std::move(description)) {}
  ~CudaBackend() override {
    ops_.reset();  // frees its workspaces on the device first
  }

  kernels::Device& device() override { return *device_; }
  kernels::Ops& ops() override { return *ops_; }
  std::string Describe() const override { return description_; }

 private:
  std::unique_ptr<CudaDevice> device_;
  std::unique_ptr<CudaOps> ops_;
  std::string description_;
};

absl::StatusOr<std::string> DescribeDevice(int ordinal) {
#ifdef KESTREL_CUDA_EMULATION
  (void)ordinal;
  return std::string("cuda:0 (CPU emulation)");
#else
  cudaDeviceProp prop;
  RETURN_IF_ERROR(CudaStatus(cudaGetDeviceProperties(&prop, ordinal), "cudaGetDeviceProperties"));
  return absl::StrFormat("cuda:%d (%s, sm_%d%d, %.0f GiB)", ordinal, prop.name, prop.major,
                         prop.minor, static_cast<double>(prop.totalGlobalMem) / (1 << 30));
#endif
}

}  // namespace

absl::StatusOr<std::unique_ptr<kernels::Backend>> CreateCudaBackend(
    const CudaBackendOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<CudaDevice> device, CudaDevice::Create(options.device));
  ASSIGN_OR_RETURN(std::string description, DescribeDevice(options.device));
  ASSIGN_OR_RETURN(std::unique_ptr<CudaOps> ops,
                   CudaOps::Create(device.get(), device->stream(), device->error()));
  return std::make_unique<CudaBackend>(std::move(device), std::move(ops), std::move(description));
}

}  // namespace kestrel::cuda
