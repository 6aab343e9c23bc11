// Host-side precomputation of the rotary embedding cos/sin tables, shared by
// every backend (the CUDA backend copies them to the device). The numbers
// follow Hugging Face's `_compute_default_rope_parameters`, `_compute_linear_
// scaling_rope_parameters` and `_compute_llama3_parameters`, in F32 like
// PyTorch, so logits match the reference implementation.
#ifndef KESTREL_KERNELS_ROPE_TABLES_H_
#define KESTREL_KERNELS_ROPE_TABLES_H_

#include <cstdint>

#include "absl/status/status.h"

namespace kestrel::kernels {

// Scaling of rotary frequencies (HF config `rope_scaling`).
struct RopeScaling {
  enum class Type : uint8_t {
    kNone = 0,
    kLinear = 1,  // inv_freq /= factor
    kLlama3 = 2,  // Llama 3.1: piecewise by wavelength, see rope.h
  };
  Type type = Type::kNone;
  float factor = 1.0f;                          // linear and llama3
  float low_freq_factor = 1.0f;                 // llama3
  float high_freq_factor = 4.0f;                // llama3
  int64_t original_max_position_embeddings = 8192;  // llama3
};

// Fills the inverse frequencies: inv_freq[i] = theta^(-2i/head_dim), then
// scaled per `scaling`, for i in [0, head_dim/2).
// REQUIRES: head_dim even and > 0, theta > 0, scaling.factor > 0; for llama3
// high_freq_factor > low_freq_factor. Violations give InvalidArgument.
absl::Status ComputeRopeInvFreq(int64_t head_dim, float theta, const RopeScaling& scaling,
                                float* inv_freq /* [head_dim / 2] */);

// cos_table[p, i] = cos(p * inv_freq[i]), sin_table likewise, for positions
// p in [0, max_positions) and i in [0, head_dim/2).
// cos_table, sin_table: [max_positions, head_dim / 2] each, caller-allocated.
absl::Status ComputeRopeTables(int64_t head_dim, float theta, const RopeScaling& scaling,
                               int64_t max_positions, float* cos_table, float* sin_table);

}  // namespace kestrel::kernels

#endif  // KESTREL_KERNELS_ROPE_TABLES_H_
