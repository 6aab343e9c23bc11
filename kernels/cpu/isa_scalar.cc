// Portable scalar variant of the ISA entry points (see isa_kernels.h): the
// fallback for CPUs without AVX2, and the baseline the SIMD variants are
// benchmarked against.
#include <cmath>
#include <cstring>

#include "kernels/cpu/isa_kernels.h"

namespace kestrel::kernels::cpu::isa {
namespace {

inline float Bf16(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline float F16(uint16_t h) {
  _Float16 v;
  std::memcpy(&v, &h, sizeof v);
  return static_cast<float>(v);
}

template <int kType>
inline float LoadW(const void* w, int64_t i) {
  if constexpr (kType == kWF32) {
    return static_cast<const float*>(w)[i];
  } else if constexpr (kType == kWF16) {
    return F16(static_cast<const uint16_t*>(w)[i]);
  } else {
    return Bf16(static_cast<const uint16_t*>(w)[i]);
  }
}

template <int kType>
void Range(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  for (int64_t i = 0; i < a.m; ++i) {
    const float* x = a.x + i * a.ldx;
    float* y = a.y + i * a.ldy;
    for (int64_t j = n_begin; j < n_end; ++j) {
      const int64_t row = j * a.ldw;
      float acc = 0.0f;
      for (int64_t kk = 0; kk < a.k; ++kk) acc += x[kk] * LoadW<kType>(a.w, row + kk);
      if (a.bias != nullptr) acc += a.bias[j];
      y[j] = a.accumulate ? y[j] + acc : acc;
    }
  }
}

inline float KvValue(float x) { return x; }
inline float KvValue(uint16_t h) { return Bf16(h); }

template <typename T>
void Scores(const float* q, const T* kt, int64_t kt_stride, int64_t count, int64_t d,
            float scale, float* s) {
  for (int64_t j = 0; j < kKeyTile; ++j) s[j] = 0.0f;
  for (int64_t i = 0; i < d; ++i) {
    for (int64_t j = 0; j < count; ++j) s[j] += q[i] * KvValue(kt[i * kt_stride + j]);
  }
  for (int64_t j = 0; j < count; ++j) s[j] *= scale;
}

float SoftmaxStep(float* s, int64_t count, float* m, float* l) {
  float m_new = *m;
  for (int64_t j = 0; j < count; ++j) m_new = s[j] > m_new ? s[j] : m_new;
  const float alpha = m_new == *m ? 1.0f : std::exp(*m - m_new);
  float sum = 0.0f;
  for (int64_t j = 0; j < count; ++j) {
    s[j] = std::exp(s[j] - m_new);
    sum += s[j];
  }
  *l = *l * alpha + sum;
  *m = m_new;
  return alpha;
}

template <typename T>
void AccumulateV(float* acc, float alpha, const float* p, const T* v, int64_t v_stride,
                 int64_t count, int64_t d) {
  for (int64_t i = 0; i < d; ++i) acc[i] *= alpha;
  for (int64_t j = 0; j < count; ++j) {
    const T* vr = v + j * v_stride;
    const float pj = p[j];
    for (int64_t i = 0; i < d; ++i) acc[i] += pj * KvValue(vr[i]);
  }
}

}  // namespace

void GemmRangeScalar(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  switch (a.w_type) {
    case kWF32: Range<kWF32>(a, n_begin, n_end); return;
    case kWF16: Range<kWF16>(a, n_begin, n_end); return;
    case kWBF16: Range<kWBF16>(a, n_begin, n_end); return;
    default: __builtin_trap();  // gemm.cc validated the dtype
  }
}

float SumF32Scalar(const float* x, int64_t n) {
  // kSumStreams equal parts read side by side, one accumulator each.
  const int64_t part = n / kSumStreams;
  float acc[kSumStreams] = {};
  for (int64_t i = 0; i < part; ++i) {
    for (int s = 0; s < kSumStreams; ++s) acc[s] += x[s * part + i];
  }
  for (int64_t i = kSumStreams * part; i < n; ++i) acc[0] += x[i];
  float sum = 0;
  for (float a : acc) sum += a;
  return sum;
}

void SiluMulScalar(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float x = gate[i];
    out[i] = x / (1.0f + std::exp(-x)) * up[i];
  }
}

const AttentionVecOps kAttentionScalar = {&Scores<float>, &Scores<uint16_t>, &SoftmaxStep,
                                          &AccumulateV<float>, &AccumulateV<uint16_t>};

}  // namespace kestrel::kernels::cpu::isa
