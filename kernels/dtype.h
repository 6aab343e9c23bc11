// Element types: every dtype the safetensors format defines (so a checkpoint
// carrying, say, an I64 buffer is reported precisely), of which F32, F16 and
// BF16 can hold weights; and the scalar conversions the loader and every
// backend share. Activations are F32; weights keep their checkpoint dtype in
// memory (see docs/kernels.md).
#ifndef KESTREL_KERNELS_DTYPE_H_
#define KESTREL_KERNELS_DTYPE_H_

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string_view>

namespace kestrel::kernels {

enum class DType : uint8_t {
  kF32 = 0,
  kF16 = 1,   // IEEE binary16
  kBF16 = 2,  // bfloat16: the top 16 bits of an F32
  kF64,
  kI64,
  kI32,
  kI16,
  kI8,
  kU8,
  kBool,
  kF8E4M3,
  kF8E5M2,
};

// Bytes per element.
constexpr int64_t DTypeSize(DType t) {
  switch (t) {
    case DType::kF64:
    case DType::kI64:
      return 8;
    case DType::kF32:
    case DType::kI32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
    case DType::kI16:
      return 2;
    case DType::kI8:
    case DType::kU8:
    case DType::kBool:
    case DType::kF8E4M3:
    case DType::kF8E5M2:
      return 1;
  }
  return 1;  // unreachable: every enumerator is handled above
}

// The safetensors spelling: "F32", "BF16", "F8_E4M3", ...
constexpr const char* DTypeName(DType t) {
  switch (t) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
    case DType::kF64: return "F64";
    case DType::kI64: return "I64";
    case DType::kI32: return "I32";
    case DType::kI16: return "I16";
    case DType::kI8: return "I8";
    case DType::kU8: return "U8";
    case DType::kBool: return "BOOL";
    case DType::kF8E4M3: return "F8_E4M3";
    case DType::kF8E5M2: return "F8_E5M2";
  }
  return "?";  // unreachable: every enumerator is handled above
}

// Inverse of DTypeName; nullopt for a name safetensors does not define.
inline std::optional<DType> ParseDTypeName(std::string_view name) {
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16, DType::kF64, DType::kI64,
                  DType::kI32, DType::kI16, DType::kI8, DType::kU8, DType::kBool,
                  DType::kF8E4M3, DType::kF8E5M2}) {
    if (std::string_view(DTypeName(t)) == name) return t;
  }
  return std::nullopt;
}

// True for the dtypes weights may have (the kernels read them directly).
constexpr bool IsWeightDType(DType t) {
  return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16;
}

inline float Bf16ToF32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Round to nearest even (what PyTorch's .to(torch.bfloat16) does); NaN stays
// a quiet NaN.
inline uint16_t F32ToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

// Exact (every binary16 value is a float).
inline float F16ToF32(uint16_t h) {
  _Float16 v;
  std::memcpy(&v, &h, sizeof v);
  return static_cast<float>(v);
}

// Round to nearest even, overflow to infinity, gradual underflow.
inline uint16_t F32ToF16(float f) {
  _Float16 v = static_cast<_Float16>(f);
  uint16_t h;
  std::memcpy(&h, &v, sizeof h);
  return h;
}

// Element `i` of a weight buffer as float. REQUIRES: IsWeightDType(t).
inline float LoadAsF32(const void* data, DType t, int64_t i) {
  switch (t) {
    case DType::kF32: return static_cast<const float*>(data)[i];
    case DType::kF16: return F16ToF32(static_cast<const uint16_t*>(data)[i]);
    case DType::kBF16: return Bf16ToF32(static_cast<const uint16_t*>(data)[i]);
    default: std::abort();  // a caller broke the REQUIRES: a bug, not bad input
  }
}

// dst[i] = float(src[i]) for i in [0, n). src holds n elements of `type`.
// Used by the loader for small 1-D tensors (norm weights, biases), which the
// kernels take as F32. REQUIRES: IsWeightDType(type).
void ConvertToF32(const void* src, DType type, int64_t n, float* dst);

}  // namespace kestrel::kernels

#endif  // KESTREL_KERNELS_DTYPE_H_
