// Element types of weight tensors as they sit in a checkpoint, and the scalar
// conversions every backend and the model loader share. Activations are F32;
// weights keep their checkpoint dtype in memory (see docs/kernels.md).
#ifndef KESTREL_KERNELS_DTYPE_H_
#define KESTREL_KERNELS_DTYPE_H_

#include <cstdint>
#include <cstring>
#include <string_view>

namespace kestrel::kernels {

enum class DType : uint8_t {
  kF32 = 0,
  kF16 = 1,   // IEEE binary16
  kBF16 = 2,  // bfloat16: the top 16 bits of an F32
};

// Bytes per element: 4 for kF32, 2 for kF16 and kBF16.
constexpr int64_t DTypeSize(DType t) { return t == DType::kF32 ? 4 : 2; }

// "F32", "F16", "BF16" (the safetensors spelling).
constexpr std::string_view DTypeName(DType t) {
  switch (t) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
  }
  return "?";
}

inline float Bf16ToF32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Round to nearest even (what PyTorch's .to(torch.bfloat16) does); NaN stays NaN.
inline uint16_t F32ToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

inline float F16ToF32(uint16_t h) {
  _Float16 v;
  std::memcpy(&v, &h, sizeof v);
  return static_cast<float>(v);
}

inline uint16_t F32ToF16(float f) {
  _Float16 v = static_cast<_Float16>(f);
  uint16_t h;
  std::memcpy(&h, &v, sizeof h);
  return h;
}

// dst[i] = float(src[i]) for i in [0, n). src holds n elements of `type`.
// Used by the loader for small 1-D tensors (norm weights, biases), which the
// kernels take as F32.
void ConvertToF32(const void* src, DType type, int64_t n, float* dst);

}  // namespace kestrel::kernels

#endif  // KESTREL_KERNELS_DTYPE_H_
