// Software __half and __nv_bfloat16 for the CUDA emulation: the storage
// types of cuda_fp16.h / cuda_bf16.h with their conversions, bit-exact with
// the GPU's (round to nearest even; NaN stays NaN), and the arithmetic
// operators kernels commonly use, computed in float and rounded once (the
// GPU's native bf16/half add can differ from float-then-round in the last
// bit for sums of operands of very different magnitude).
//
// As in CUDA, both types convert implicitly to and from float, so mixed
// expressions such as `h * 2.0f` are ambiguous there as well: convert
// explicitly with __half2float / __bfloat162float.
#ifndef KESTREL_KERNELS_CUDA_EMULATION_CUDA_FP16_EMULATION_H_
#define KESTREL_KERNELS_CUDA_EMULATION_CUDA_FP16_EMULATION_H_

#include <bit>
#include <cstdint>

namespace kestrel::cuda::emulation {

inline uint16_t FloatToBf16Bits(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // NaN
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
inline float Bf16BitsToFloat(uint16_t b) { return std::bit_cast<float>(uint32_t{b} << 16); }

// IEEE binary16, round to nearest even, as _Float16 conversions do.
inline uint16_t FloatToHalfBits(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((abs >> 13) & 0x3ffu));
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to infinity
  if (abs < 0x38800000u) {  // below the smallest normal half: subnormal or zero
    if (abs < 0x33000000u) return static_cast<uint16_t>(sign);  // <= half the smallest subnormal
    const uint32_t exponent = abs >> 23;
    const uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - exponent;  // value = mantissa * 2^(exponent - 150)
    const uint32_t kept = mantissa >> shift;  // in units of 2^-24, the half subnormal step
    const uint32_t rest = mantissa & ((1u << shift) - 1u);
    const uint32_t halfway = 1u << (shift - 1u);
    uint32_t result = kept;
    if (rest > halfway || (rest == halfway && (kept & 1u))) ++result;
    return static_cast<uint16_t>(sign | result);
  }
  const uint32_t rebased = abs - 0x38000000u;  // exponent bias 127 -> 15
  const uint32_t rest = rebased & 0x1fffu;
  uint32_t result = rebased >> 13;
  if (rest > 0x1000u || (rest == 0x1000u && (result & 1u))) ++result;
  return static_cast<uint16_t>(sign | result);
}

inline float HalfBitsToFloat(uint16_t h) {
  const uint32_t sign = uint32_t{h & 0x8000u} << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  if (exponent != 0) return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
  // Zero or subnormal: mantissa * 2^-24, exact in float.
  const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
  return sign ? -magnitude : magnitude;
}

}  // namespace kestrel::cuda::emulation

#define KESTREL_EMULATED_16BIT_FLOAT(T, TO_BITS, FROM_BITS)                                     \
  struct T {                                                                                    \
    uint16_t __x;                                                                               \
    T() = default;                                                                              \
    T(float f) : __x(::kestrel::cuda::emulation::TO_BITS(f)) {}                                 \
    T(double d) : __x(::kestrel::cuda::emulation::TO_BITS(static_cast<float>(d))) {}            \
    T(int i) : __x(::kestrel::cuda::emulation::TO_BITS(static_cast<float>(i))) {}               \
    operator float() const { return ::kestrel::cuda::emulation::FROM_BITS(__x); }               \
    T& operator+=(const T& o) { return *this = T(float(*this) + float(o)); }                    \
    T& operator-=(const T& o) { return *this = T(float(*this) - float(o)); }                    \
    T& operator*=(const T& o) { return *this = T(float(*this) * float(o)); }                    \
    T& operator/=(const T& o) { return *this = T(float(*this) / float(o)); }                    \
  };                                                                                            \
  inline T operator+(const T& a, const T& b) { return T(float(a) + float(b)); }                 \
  inline T operator-(const T& a, const T& b) { return T(float(a) - float(b)); }                 \
  inline T operator*(const T& a, const T& b) { return T(float(a) * float(b)); }                 \
  inline T operator/(const T& a, const T& b) { return T(float(a) / float(b)); }                 \
  inline T operator-(const T& a) {                                                              \
    T r;                                                                                        \
    r.__x = static_cast<uint16_t>(a.__x ^ 0x8000u);                                             \
    return r;                                                                                   \
  }                                                                                             \
  inline bool operator==(const T& a, const T& b) { return float(a) == float(b); }               \
  inline bool operator!=(const T& a, const T& b) { return float(a) != float(b); }               \
  inline bool operator<(const T& a, const T& b) { return float(a) < float(b); }                 \
  inline bool operator<=(const T& a, const T& b) { return float(a) <= float(b); }               \
  inline bool operator>(const T& a, const T& b) { return float(a) > float(b); }                 \
  inline bool operator>=(const T& a, const T& b) { return float(a) >= float(b); }

KESTREL_EMULATED_16BIT_FLOAT(__half, FloatToHalfBits, HalfBitsToFloat)
KESTREL_EMULATED_16BIT_FLOAT(__nv_bfloat16, FloatToBf16Bits, Bf16BitsToFloat)
#undef KESTREL_EMULATED_16BIT_FLOAT

using half = __half;
using nv_bfloat16 = __nv_bfloat16;

struct alignas(4) __half2 {
  __half x, y;
};
struct alignas(4) __nv_bfloat162 {
  __nv_bfloat16 x, y;
};
using half2 = __half2;
using nv_bfloat162 = __nv_bfloat162;

inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16(f); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16(f); }
inline float __bfloat162float(__nv_bfloat16 b) { return float(b); }
inline __half __float2half(float f) { return __half(f); }
inline __half __float2half_rn(float f) { return __half(f); }
inline float __half2float(__half h) { return float(h); }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.__x; }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) {
  __nv_bfloat16 b;
  b.__x = u;
  return b;
}
inline __half __ushort_as_half(unsigned short u) {
  __half h;
  h.__x = u;
  return h;
}
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) { return {__nv_bfloat16(a), __nv_bfloat16(b)}; }
inline __half2 __floats2half2_rn(float a, float b) { return {__half(a), __half(b)}; }

#endif  // KESTREL_KERNELS_CUDA_EMULATION_CUDA_FP16_EMULATION_H_
