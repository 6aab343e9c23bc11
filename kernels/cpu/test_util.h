// Test helpers for the CPU kernel tests: deterministic random data, dtype
// copies, and closeness checks that name the first mismatch.
#ifndef KESTREL_KERNELS_CPU_TEST_UTIL_H_
#define KESTREL_KERNELS_CPU_TEST_UTIL_H_

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/dtype.h"

namespace kestrel::kernels::testing {

inline std::vector<float> RandomVector(size_t n, uint32_t seed, float lo = -1.0f,
                                       float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

inline std::vector<float> NaNVector(size_t n) {
  return std::vector<float>(n, std::numeric_limits<float>::quiet_NaN());
}

inline std::vector<uint16_t> ToBf16(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = F32ToBf16(v[i]);
  return out;
}

inline std::vector<uint16_t> ToF16(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = F32ToF16(v[i]);
  return out;
}

// "" if |a[i] - b[i]| <= atol + rtol * |b[i]| for all i (NaN never passes),
// else a message naming the first bad index and both values.
inline std::string CompareClose(const float* a, const float* b, size_t n, float atol,
                                float rtol = 0.0f) {
  for (size_t i = 0; i < n; ++i) {
    const float diff = std::fabs(a[i] - b[i]);
    if (!(diff <= atol + rtol * std::fabs(b[i]))) {
      return "index " + std::to_string(i) + ": got " + std::to_string(a[i]) + ", want " +
             std::to_string(b[i]);
    }
  }
  return "";
}

}  // namespace kestrel::kernels::testing

#endif  // KESTREL_KERNELS_CPU_TEST_UTIL_H_
