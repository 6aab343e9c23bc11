// GEMM front end: validation, ISA choice, activation conversion for the bf16
// dot-product path, and the split of N over the thread pool (see gemm.h).
#include "kernels/cpu/gemm.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/isa_dispatch.h"
#include "kernels/cpu/isa_kernels.h"

namespace kestrel::kernels::cpu {
namespace {

// Columns per ParallelFor grain: a multiple of every variant's column tile
// (scalar 1, AVX2 3/4, AVX-512 6/8), so tiles never straddle two threads.
constexpr int64_t kColumnGrain = 48;

// Largest k for int8 weights: see Validate.
constexpr int64_t kMaxI8K = 65536;

absl::Status Validate(const GemmParams& p) {
  if (p.m < 0 || p.n < 0 || p.k < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("Gemm: m, n, k must be >= 0, got m=", p.m, " n=", p.n, " k=", p.k));
  }
  if (p.ldx < p.k || p.ldw < p.k || p.ldy < p.n) {
    return absl::InvalidArgumentError(absl::StrCat("Gemm: ldx=", p.ldx, " ldw=", p.ldw,
                                                   " ldy=", p.ldy, " too small for k=", p.k,
                                                   " n=", p.n));
  }
  switch (p.w_dtype) {
    case DType::kF32:
    case DType::kF16:
    case DType::kBF16:
      break;
    case DType::kI8:
      if (p.w_scales == nullptr && p.m > 0 && p.n > 0) {
        return absl::InvalidArgumentError("Gemm: w_dtype I8 needs w_scales, got null");
      }
      // The int32 dot products are exact for |sum| <= k * 255 * 127 < 2^31.
      if (p.k > kMaxI8K) {
        return absl::InvalidArgumentError(
            absl::StrCat("Gemm: k must be <= ", kMaxI8K, " for I8 weights, got ", p.k));
      }
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("Gemm: unsupported w_dtype ", static_cast<int>(p.w_dtype)));
  }
  if (p.m == 0 || p.n == 0) return absl::OkStatus();
  if (p.y == nullptr) return absl::InvalidArgumentError("Gemm: y is null");
  if (p.k > 0 && (p.x == nullptr || p.w == nullptr)) {
    return absl::InvalidArgumentError("Gemm: x or w is null");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Gemm(const GemmParams& p, ThreadPool* pool, Isa isa) {
  if (absl::Status s = Validate(p); !s.ok()) return s;
  const Isa resolved = ResolveIsa(isa);
  if (!IsaSupported(resolved)) {
    return absl::InvalidArgumentError(
        absl::StrCat("Gemm: isa ", std::string(IsaName(resolved)), " is not supported by this CPU"));
  }
  if (p.m == 0 || p.n == 0) return absl::OkStatus();
  if (p.k == 0) {
    for (int64_t i = 0; i < p.m; ++i) {
      float* y = p.y + i * p.ldy;
      for (int64_t j = 0; j < p.n; ++j) {
        const float b = p.bias != nullptr ? p.bias[j] : 0.0f;
        y[j] = p.accumulate ? y[j] + b : b;
      }
    }
    return absl::OkStatus();
  }

  isa::GemmArgs a{};
  a.x = p.x;
  a.ldx = p.ldx;
  a.w = p.w;
  a.w_type = p.w_dtype == DType::kF32   ? isa::kWF32
             : p.w_dtype == DType::kF16 ? isa::kWF16
             : p.w_dtype == DType::kI8  ? isa::kWI8
                                        : isa::kWBF16;
  a.ldw = p.ldw;
  a.bias = p.bias;
  a.y = p.y;
  a.ldy = p.ldy;
  a.m = p.m;
  a.n = p.n;
  a.k = p.k;
  a.accumulate = p.accumulate;
  // AVX-512 without VNNI runs int8 GEMMs with the AVX2 kernels.
  const IsaTable& table =
      p.w_dtype == DType::kI8 && !GetIsaTable(resolved).i8_gemm && IsaSupported(Isa::kAvx2)
          ? GetIsaTable(Isa::kAvx2)
          : GetIsaTable(resolved);
  a.bf16_dot = p.bf16_dot && p.w_dtype == DType::kBF16 && table.convert_to_bf16 != nullptr;

  // Activations rounded to bf16 once per call, padded to whole 32-element
  // steps so the kernel needs no masked loads on x.
  thread_local std::vector<uint16_t> xb;
  if (a.bf16_dot) {
    const int64_t kpad = (p.k + 31) / 32 * 32;
    xb.resize(static_cast<size_t>(p.m * kpad));
    table.convert_to_bf16(p.x, p.ldx, p.m, p.k, xb.data(), kpad);
    a.xb = xb.data();
    a.ldxb = kpad;
  }

  // Activations quantized to int8 once per call, one scale per row; padded
  // to whole kI8Pad steps so the kernel needs no masked loads on x.
  thread_local std::vector<int8_t> xq;
  thread_local std::vector<float> x_scale;
  thread_local std::vector<int32_t> x_sum;
  if (p.w_dtype == DType::kI8) {
    const int64_t kpad = (p.k + isa::kI8Pad - 1) / isa::kI8Pad * isa::kI8Pad;
    xq.resize(static_cast<size_t>(p.m * kpad));
    x_scale.resize(static_cast<size_t>(p.m));
    x_sum.resize(static_cast<size_t>(p.m));
    table.quantize_i8(p.x, p.ldx, p.m, p.k, xq.data(), kpad, x_scale.data(), x_sum.data());
    a.xq = xq.data();
    a.ldxq = kpad;
    a.x_scale = x_scale.data();
    a.x_sum = x_sum.data();
    a.w_scale = p.w_scales;
  }

  // Even/odd split of x for the exact BF16 path (see isa_kernels.h).
  thread_local std::vector<float> xd;
  if (p.w_dtype == DType::kBF16 && !a.bf16_dot && table.bf16_split_lanes > 0) {
    const int64_t lanes = table.bf16_split_lanes;
    const int64_t group = 2 * lanes;
    const int64_t kpad = (p.k + group - 1) / group * group;
    xd.assign(static_cast<size_t>(p.m * kpad), 0.0f);
    for (int64_t i = 0; i < p.m; ++i) {
      const float* x = p.x + i * p.ldx;
      float* o = xd.data() + i * kpad;
      for (int64_t g = 0; g < p.k; g += group) {
        const int64_t len = std::min(group, p.k - g);
        for (int64_t r = 0; r + 1 < len; r += 2) {
          o[g + r / 2] = x[g + r];
          o[g + lanes + r / 2] = x[g + r + 1];
        }
        if (len % 2 != 0) o[g + (len - 1) / 2] = x[g + len - 1];
      }
    }
    a.xd = xd.data();
    a.ldxd = kpad;
  }

  ParallelFor(pool, p.n, kColumnGrain,
              [&](int64_t begin, int64_t end) { table.gemm_range(a, begin, end); });
  return absl::OkStatus();
}

}  // namespace kestrel::kernels::cpu
