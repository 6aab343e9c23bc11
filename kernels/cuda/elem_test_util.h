// Helpers for the tests of the elementwise CUDA kernels (embedding, norm,
// rope, activation, kv_cache, copy): device buffers through the CUDA runtime
// API only (so the same test runs under the emulation and on a GPU), the
// DeviceError read-back, and a bitwise check that padding was not touched.
#ifndef KESTREL_KERNELS_CUDA_ELEM_TEST_UTIL_H_
#define KESTREL_KERNELS_CUDA_ELEM_TEST_UTIL_H_

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/test_util.h"
#include "kernels/cuda/cuda_compat.h"

#include "kernels/cuda/device_error.h"

namespace kestrel::cuda::testing {

// An array of T in device memory, freed on destruction.
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t n) : n_(n) {
    void* p = nullptr;
    REQUIRE(cudaMalloc(&p, (n > 0 ? n : 1) * sizeof(T)) == cudaSuccess);
    ptr_ = static_cast<T*>(p);
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) { Upload(host); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { cudaFree(ptr_); }

  T* get() const { return ptr_; }
  size_t size() const { return n_; }

  void Upload(const std::vector<T>& host) {
    REQUIRE(host.size() == n_);
    if (n_ > 0) {
      REQUIRE(cudaMemcpy(ptr_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
    }
  }
  std::vector<T> Download() const {
    std::vector<T> host(n_);
    if (n_ > 0) {
      REQUIRE(cudaMemcpy(host.data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess);
    }
    return host;
  }

 private:
  size_t n_;
  T* ptr_ = nullptr;
};

// A cleared DeviceError in device memory.
class DeviceErrorSlot {
 public:
  DeviceErrorSlot() : slot_(std::vector<DeviceError>(1)) {}
  DeviceError* get() const { return slot_.get(); }
  DeviceError Read() const {
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    return slot_.Download()[0];
  }

 private:
  DeviceArray<DeviceError> slot_;
};

// Launch result and completion: the launcher's error, then the device's.
inline void RequireSuccess(cudaError_t launch) {
  REQUIRE(launch == cudaSuccess);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
}

// "" if got and want are bitwise equal, else the first differing element.
template <typename T>
std::string CompareBits(const std::vector<T>& got, const std::vector<T>& want) {
  if (got.size() != want.size()) return "sizes differ";
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::memcmp(&got[i], &want[i], sizeof(T)) != 0) {
      return "element " + std::to_string(i) + " differs";
    }
  }
  return "";
}

// "" if every element of rows [0, rows) past `width` (up to `stride`), and
// past the last row, is bitwise as in `before`: the kernel wrote nothing but
// the rows' first `width` elements.
template <typename T>
std::string CheckPaddingUntouched(const std::vector<T>& got, const std::vector<T>& before,
                                  int64_t rows, int64_t width, int64_t stride) {
  for (size_t i = 0; i < got.size(); ++i) {
    const int64_t r = static_cast<int64_t>(i) / stride, c = static_cast<int64_t>(i) % stride;
    if (r < rows && c < width) continue;
    if (std::memcmp(&got[i], &before[i], sizeof(T)) != 0) {
      return "padding element " + std::to_string(i) + " (row " + std::to_string(r) + ", column " +
             std::to_string(c) + ") was written";
    }
  }
  return "";
}

// "" if the first `width` elements of rows [0, rows) of got and want (row
// stride `stride`) are close as in kernels::testing::CompareClose.
inline std::string CompareRowsClose(const std::vector<float>& got, const std::vector<float>& want,
                                    int64_t rows, int64_t width, int64_t stride, float atol,
                                    float rtol) {
  for (int64_t r = 0; r < rows; ++r) {
    const std::string diff = kernels::testing::CompareClose(
        got.data() + r * stride, want.data() + r * stride, static_cast<size_t>(width), atol, rtol);
    if (!diff.empty()) return "row " + std::to_string(r) + ": " + diff;
  }
  return "";
}

}  // namespace kestrel::cuda::testing

#endif  // KESTREL_KERNELS_CUDA_ELEM_TEST_UTIL_H_
