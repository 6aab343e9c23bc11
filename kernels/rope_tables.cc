// RoPE frequency and cos/sin tables, following Hugging Face's
// modeling_rope_utils.py in F32 (see rope_tables.h).
#include "kernels/rope_tables.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"

namespace kestrel::kernels {

absl::Status ComputeRopeInvFreq(int64_t head_dim, float theta, const RopeScaling& scaling,
                                float* inv_freq) {
  if (head_dim <= 0 || head_dim % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("rope head_dim must be even and positive, got ", head_dim));
  }
  if (!(theta > 0.0f) || !std::isfinite(theta)) {
    return absl::InvalidArgumentError(absl::StrCat("rope_theta must be > 0, got ", theta));
  }
  if (inv_freq == nullptr) return absl::InvalidArgumentError("rope inv_freq is null");
  if (scaling.type != RopeScaling::Type::kNone && !(scaling.factor > 0.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("rope_scaling.factor must be > 0, got ", scaling.factor));
  }
  const int64_t half = head_dim / 2;
  for (int64_t i = 0; i < half; ++i) {
    // torch: 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim)), in F32.
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    inv_freq[i] = 1.0f / std::pow(theta, exponent);
  }
  switch (scaling.type) {
    case RopeScaling::Type::kNone:
      return absl::OkStatus();
    case RopeScaling::Type::kLinear:
      for (int64_t i = 0; i < half; ++i) inv_freq[i] /= scaling.factor;
      return absl::OkStatus();
    case RopeScaling::Type::kLlama3: {
      if (!(scaling.high_freq_factor > scaling.low_freq_factor) ||
          !(scaling.low_freq_factor > 0.0f)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "rope_scaling.high_freq_factor must be > low_freq_factor > 0, got ",
            scaling.high_freq_factor, " and ", scaling.low_freq_factor));
      }
      if (scaling.original_max_position_embeddings <= 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("rope_scaling.original_max_position_embeddings must be > 0, got ",
                         scaling.original_max_position_embeddings));
      }
      const float old_len = static_cast<float>(scaling.original_max_position_embeddings);
      const float low_freq_wavelen = old_len / scaling.low_freq_factor;
      const float high_freq_wavelen = old_len / scaling.high_freq_factor;
      constexpr float kPi = 3.14159265358979323846f;
      for (int64_t i = 0; i < half; ++i) {
        const float f = inv_freq[i];
        const float wavelen = 2.0f * kPi / f;
        float scaled = wavelen > low_freq_wavelen ? f / scaling.factor : f;
        const bool medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
        if (medium) {
          const float smooth = (old_len / wavelen - scaling.low_freq_factor) /
                               (scaling.high_freq_factor - scaling.low_freq_factor);
          scaled = (1.0f - smooth) * scaled / scaling.factor + smooth * scaled;
        }
        inv_freq[i] = scaled;
      }
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown rope scaling type ", static_cast<int>(scaling.type)));
}

absl::Status ComputeRopeTables(int64_t head_dim, float theta, const RopeScaling& scaling,
                               int64_t max_positions, float* cos_table, float* sin_table) {
  if (max_positions < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("rope max_positions must be >= 0, got ", max_positions));
  }
  if (max_positions > 0 && (cos_table == nullptr || sin_table == nullptr)) {
    return absl::InvalidArgumentError("rope cos_table/sin_table is null");
  }
  std::vector<float> inv_freq(static_cast<size_t>(head_dim > 0 ? head_dim / 2 : 1));
  if (absl::Status s = ComputeRopeInvFreq(head_dim, theta, scaling, inv_freq.data()); !s.ok()) {
    return s;
  }
  const int64_t half = head_dim / 2;
  for (int64_t p = 0; p < max_positions; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      // torch: freqs = position (F32) * inv_freq (F32), then cos/sin in F32.
      const float angle = static_cast<float>(p) * inv_freq[i];
      cos_table[p * half + i] = static_cast<float>(std::cos(static_cast<double>(angle)));
      sin_table[p * half + i] = static_cast<float>(std::sin(static_cast<double>(angle)));
    }
  }
  return absl::OkStatus();
}

}  // namespace kestrel::kernels
