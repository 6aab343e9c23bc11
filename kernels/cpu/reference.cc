// Scalar references (see reference.h).
#include "kernels/cpu/reference.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <vector>

namespace kestrel::kernels::reference {

namespace {

// W8A8 (GemmParams::w_dtype == kI8): x quantized per row like the kernels
// (scale max|x| / 127, round half to even of x * (127 / max)), exact integer
// dot products, then the same F32 epilogue.
void GemmI8(const GemmParams& p) {
  const int8_t* w = static_cast<const int8_t*>(p.w);
  std::vector<int32_t> xq(static_cast<size_t>(p.k));
  for (int64_t i = 0; i < p.m; ++i) {
    const float* x = p.x + i * p.ldx;
    float amax = 0.0f;
    for (int64_t kk = 0; kk < p.k; ++kk) amax = std::max(amax, std::fabs(x[kk]));
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    const float x_scale = amax / 127.0f;
    for (int64_t kk = 0; kk < p.k; ++kk) {
      xq[kk] = static_cast<int32_t>(std::nearbyint(x[kk] * inv));
    }
    for (int64_t j = 0; j < p.n; ++j) {
      int64_t acc = 0;
      for (int64_t kk = 0; kk < p.k; ++kk) acc += int64_t{xq[kk]} * w[j * p.ldw + kk];
      float dot = static_cast<float>(acc) * (x_scale * p.w_scales[j]);
      if (p.bias != nullptr) dot += p.bias[j];
      float& y = p.y[i * p.ldy + j];
      y = p.accumulate ? y + dot : dot;
    }
  }
}

}  // namespace

void Gemm(const GemmParams& p) {
  if (p.w_dtype == DType::kI8) {
    GemmI8(p);
    return;
  }
  for (int64_t i = 0; i < p.m; ++i) {
    for (int64_t j = 0; j < p.n; ++j) {
      double acc = 0.0;
      for (int64_t kk = 0; kk < p.k; ++kk) {
        float x = p.x[i * p.ldx + kk];
        float w = 0.0f;
        const int64_t idx = j * p.ldw + kk;
        switch (p.w_dtype) {
          case DType::kF32: w = static_cast<const float*>(p.w)[idx]; break;
          case DType::kF16: w = F16ToF32(static_cast<const uint16_t*>(p.w)[idx]); break;
          case DType::kBF16:
            w = Bf16ToF32(static_cast<const uint16_t*>(p.w)[idx]);
            if (p.bf16_dot) x = Bf16ToF32(F32ToBf16(x));
            break;
          default:  // not a weight dtype: a broken test
            std::abort();
        }
        acc += static_cast<double>(x) * w;
      }
      if (p.bias != nullptr) acc += p.bias[j];
      float& y = p.y[i * p.ldy + j];
      y = p.accumulate ? static_cast<float>(y + acc) : static_cast<float>(acc);
    }
  }
}

void RmsNorm(const float* x, int64_t x_stride, float* out, int64_t out_stride,
             const float* weight, int64_t rows, int64_t dim, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0.0;
    for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(x[r * x_stride + i]) * x[r * x_stride + i];
    const double inv = 1.0 / std::sqrt(ss / dim + eps);
    for (int64_t i = 0; i < dim; ++i) {
      out[r * out_stride + i] = static_cast<float>(x[r * x_stride + i] * inv * weight[i]);
    }
  }
}

namespace {
void RotateOne(float* v, int64_t d, int32_t pos, const float* inv_freq) {
  const int64_t half = d / 2;
  for (int64_t i = 0; i < half; ++i) {
    const double angle = static_cast<double>(pos) * inv_freq[i];
    const double c = std::cos(angle), s = std::sin(angle);
    const double a = v[i], b = v[i + half];
    v[i] = static_cast<float>(a * c - b * s);
    v[i + half] = static_cast<float>(b * c + a * s);
  }
}
}  // namespace

void ApplyRope(float* q, int64_t num_q_heads, float* k, int64_t num_kv_heads,
               const int32_t* positions, int64_t num_tokens, int64_t head_dim,
               const float* inv_freq) {
  for (int64_t t = 0; t < num_tokens; ++t) {
    for (int64_t h = 0; h < num_q_heads; ++h) {
      RotateOne(q + (t * num_q_heads + h) * head_dim, head_dim, positions[t], inv_freq);
    }
    for (int64_t h = 0; h < num_kv_heads; ++h) {
      RotateOne(k + (t * num_kv_heads + h) * head_dim, head_dim, positions[t], inv_freq);
    }
  }
}

void SiluAndMul(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i];
    out[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up[i]);
  }
}

void Attention(const float* q, const float* keys, const float* values, float* out,
               int64_t n_new, int64_t ctx, int64_t num_heads, int64_t num_kv_heads, int64_t d,
               float scale, int64_t sliding_window) {
  const int64_t group = num_heads / num_kv_heads;
  std::vector<double> scores(static_cast<size_t>(ctx));
  for (int64_t t = 0; t < n_new; ++t) {
    const int64_t pos = ctx - n_new + t;
    const int64_t lo = sliding_window > 0 ? std::max<int64_t>(0, pos - sliding_window + 1) : 0;
    for (int64_t h = 0; h < num_heads; ++h) {
      const int64_t g = h / group;
      const float* qv = q + (t * num_heads + h) * d;
      double mx = -std::numeric_limits<double>::infinity();
      for (int64_t j = lo; j <= pos; ++j) {
        const float* kv = keys + (j * num_kv_heads + g) * d;
        double s = 0.0;
        for (int64_t i = 0; i < d; ++i) s += static_cast<double>(qv[i]) * kv[i];
        scores[j] = s * scale;
        mx = std::max(mx, scores[j]);
      }
      double sum = 0.0;
      for (int64_t j = lo; j <= pos; ++j) {
        scores[j] = std::exp(scores[j] - mx);
        sum += scores[j];
      }
      float* o = out + (t * num_heads + h) * d;
      for (int64_t i = 0; i < d; ++i) {
        double acc = 0.0;
        for (int64_t j = lo; j <= pos; ++j) acc += scores[j] * values[(j * num_kv_heads + g) * d + i];
        o[i] = static_cast<float>(acc / sum);
      }
    }
  }
}

void Softmax(const float* x, float* out, int64_t n) {
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < n; ++i) mx = std::max<double>(mx, x[i]);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(x[i] - mx);
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(std::exp(x[i] - mx) / sum);
}

void LogSoftmax(const float* x, float* out, int64_t n) {
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < n; ++i) mx = std::max<double>(mx, x[i]);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(x[i] - mx);
  const double lse = mx + std::log(sum);
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(x[i] - lse);
}

}  // namespace kestrel::kernels::reference
