// Test helpers shared by gemm_test and gemv_test: device buffers through the
// CUDA runtime API (so the tests also run on a GPU), and GEMM problems with
// padded, NaN-filled strides and their CPU references.
#ifndef KESTREL_KERNELS_CUDA_GEMM_TEST_UTIL_H_
#define KESTREL_KERNELS_CUDA_GEMM_TEST_UTIL_H_

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/reference.h"
#include "kernels/cpu/test_util.h"
#include "kernels/cuda/cuda_compat.h"
#include "kernels/dtype.h"
#include "kernels/ops.h"

namespace kestrel::cuda::testing {

// Device copy of a host vector; Download() copies it back.
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(const std::vector<T>& host) : size_(host.size()) {
    REQUIRE(cudaMalloc(&ptr_, Bytes()) == cudaSuccess);
    REQUIRE(cudaMemcpy(ptr_, host.data(), Bytes(), cudaMemcpyHostToDevice) == cudaSuccess);
  }
  ~DeviceArray() { cudaFree(ptr_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  T* get() const { return static_cast<T*>(ptr_); }
  std::vector<T> Download() const {
    std::vector<T> host(size_);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    REQUIRE(cudaMemcpy(host.data(), ptr_, Bytes(), cudaMemcpyDeviceToHost) == cudaSuccess);
    return host;
  }

 private:
  size_t Bytes() const { return size_ * sizeof(T) > 0 ? size_ * sizeof(T) : 1; }
  void* ptr_ = nullptr;
  size_t size_;
};

// Weights stored in a dtype: F32 as floats, F16/BF16 as their bits.
struct HostWeights {
  kernels::DType dtype;
  std::vector<float> f32;
  std::vector<uint16_t> bits;
  const void* data() const {
    return dtype == kernels::DType::kF32 ? static_cast<const void*>(f32.data()) : bits.data();
  }
};

inline uint16_t ToBits(kernels::DType dtype, float v) {
  return dtype == kernels::DType::kBF16 ? kernels::F32ToBf16(v) : kernels::F32ToF16(v);
}

// x rounded to `dtype` and back (what the cuBLAS path multiplies).
inline float RoundTo(kernels::DType dtype, float v) {
  switch (dtype) {
    case kernels::DType::kBF16: return kernels::Bf16ToF32(kernels::F32ToBf16(v));
    case kernels::DType::kF16: return kernels::F16ToF32(kernels::F32ToF16(v));
    default: return v;
  }
}

// One y = x·Wᵀ (+bias) (+y) problem on the host, every stride padded and
// the padding (and y, unless accumulating) NaN, so a kernel that reads or
// writes outside the matrices shows it.
struct Problem {
  int64_t m, n, k, ldx, ldw, ldy;
  bool bias, accumulate;
  std::vector<float> x, b, y;
  HostWeights w;

  // Row strides: k + x_pad, k + w_pad, n + y_pad.
  Problem(kernels::DType dtype, int64_t m_, int64_t n_, int64_t k_, bool bias_, bool accumulate_,
          uint32_t seed, int64_t x_pad = 3, int64_t w_pad = 5, int64_t y_pad = 2)
      : m(m_), n(n_), k(k_), ldx(k_ + x_pad), ldw(k_ + w_pad), ldy(n_ + y_pad), bias(bias_),
        accumulate(accumulate_) {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    x = Padded(kernels::testing::RandomVector(static_cast<size_t>(m * k), seed), m, k, ldx);
    const std::vector<float> wv =
        Padded(kernels::testing::RandomVector(static_cast<size_t>(n * k), seed + 1), n, k, ldw);
    w.dtype = dtype;
    if (dtype == kernels::DType::kF32) {
      w.f32 = wv;
    } else {
      for (float v : wv) w.bits.push_back(ToBits(dtype, v));
    }
    b = kernels::testing::RandomVector(static_cast<size_t>(n), seed + 2);
    if (accumulate) {
      y = Padded(kernels::testing::RandomVector(static_cast<size_t>(m * n), seed + 3), m, n, ldy);
    } else {
      y.assign(static_cast<size_t>(m * ldy), nan);
    }
  }

  // [rows, cols] of `dense` at row stride ld, NaN in the padding.
  static std::vector<float> Padded(const std::vector<float>& dense, int64_t rows, int64_t cols,
                                   int64_t ld) {
    std::vector<float> out(static_cast<size_t>(rows * ld), std::numeric_limits<float>::quiet_NaN());
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) out[r * ld + c] = dense[r * cols + c];
    }
    return out;
  }

  // kernels::reference::Gemm on host copies. round_x: x rounded to the
  // weight dtype first (the cuBLAS path for F16/BF16 weights).
  std::vector<float> Reference(bool round_x) const {
    std::vector<float> xr = x;
    if (round_x) {
      for (float& v : xr) v = RoundTo(w.dtype, v);
    }
    std::vector<float> out = y;
    kernels::GemmParams p;
    p.x = xr.data();
    p.ldx = ldx;
    p.w = w.data();
    p.w_dtype = w.dtype;
    p.ldw = ldw;
    p.bias = bias ? b.data() : nullptr;
    p.y = out.data();
    p.ldy = ldy;
    p.m = m;
    p.n = n;
    p.k = k;
    p.accumulate = accumulate;
    kernels::reference::Gemm(p);
    return out;
  }

  // Per element of y: sum_k |x w| (an error bound scale).
  std::vector<float> AbsProducts() const {
    std::vector<float> out(static_cast<size_t>(m * ldy), 0.0f);
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t c = 0; c < k; ++c) {
          s += std::fabs(x[i * ldx + c] * kernels::LoadAsF32(w.data(), w.dtype, j * ldw + c));
        }
        out[i * ldy + j] = static_cast<float>(s);
      }
    }
    return out;
  }
};

// "" if got matches want within atol + rtol*|want| + scale[i]*rel_scale in
// y's [m, n] block and got's padding is still NaN; else the first mismatch.
inline std::string CompareY(const Problem& p, const std::vector<float>& got,
                            const std::vector<float>& want, float atol, float rtol,
                            const std::vector<float>* scale = nullptr, float rel_scale = 0.0f) {
  for (int64_t i = 0; i < p.m; ++i) {
    for (int64_t j = 0; j < p.ldy; ++j) {
      const size_t e = static_cast<size_t>(i * p.ldy + j);
      const std::string where = "y[" + std::to_string(i) + "][" + std::to_string(j) + "]";
      if (j >= p.n) {
        if (!std::isnan(got[e])) {
          return where + " in the padding was written: " + std::to_string(got[e]);
        }
        continue;
      }
      const float tol = atol + rtol * std::fabs(want[e]) + (scale ? (*scale)[e] * rel_scale : 0);
      if (!(std::fabs(got[e] - want[e]) <= tol)) {
        return where + ": got " + std::to_string(got[e]) + ", want " + std::to_string(want[e]) +
               " (tolerance " + std::to_string(tol) + ")";
      }
    }
  }
  return "";
}

}  // namespace kestrel::cuda::testing

#endif  // KESTREL_KERNELS_CUDA_GEMM_TEST_UTIL_H_
