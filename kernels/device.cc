#include "kernels/device.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace kestrel::kernels {

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : device_(std::exchange(other.device_, nullptr)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    Release();
    device_ = std::exchange(other.device_, nullptr);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

DeviceBuffer::~DeviceBuffer() { Release(); }

void DeviceBuffer::Release() {
  if (data_ != nullptr) device_->FreeRaw(data_, size_);
  device_ = nullptr;
  data_ = nullptr;
  size_ = 0;
}

absl::StatusOr<DeviceBuffer> Device::Allocate(size_t bytes, std::string_view what) {
  if (bytes == 0) return DeviceBuffer();
  absl::StatusOr<void*> data = AllocateRaw(bytes);
  if (!data.ok()) {
    return absl::Status(data.status().code(),
                        absl::StrCat(name(), ": cannot allocate ", bytes, " bytes for ",
                                     std::string(what), ": ", data.status().message()));
  }
  return DeviceBuffer(this, *data, bytes);
}

}  // namespace kestrel::kernels
