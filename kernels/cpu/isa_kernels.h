// Internal: the entry points each ISA variant (isa_scalar.cc, isa_avx2.cc,
// isa_avx512.cc) provides. Plain structs and functions only: the SIMD
// translation units include nothing else (see BUILD.bazel).
#ifndef KESTREL_KERNELS_CPU_ISA_KERNELS_H_
#define KESTREL_KERNELS_CPU_ISA_KERNELS_H_

#include <cstddef>
#include <cstdint>

namespace kestrel::kernels::cpu::isa {

enum WeightType : int { kWF32 = 0, kWF16 = 1, kWBF16 = 2 };

// A validated GEMM (see GemmParams in kernels/ops.h).
struct GemmArgs {
  const float* x;   // [m, k], row stride ldx
  int64_t ldx;
  // bf16_dot only: x rounded to bf16, [m, kpad] with kpad = k rounded up to
  // 32 and zeros in the padding; row stride ldxb.
  const uint16_t* xb;
  int64_t ldxb;
  // BF16 weights without bf16_dot (SIMD variants only): x with each group of
  // 2*L elements (L = vector lanes: 16 for AVX-512, 8 for AVX2) stored as
  // its L even-index elements then its L odd-index elements, [m, kpad2]
  // with kpad2 = k rounded up to 2*L, zero padded; row stride ldxd. A
  // 32-bit lane of bf16 weights then widens to two F32 vectors with one
  // shift and one AND, matching the even and odd halves.
  const float* xd;
  int64_t ldxd;
  const void* w;    // [n, k] in w_type, row stride ldw (elements)
  int w_type;
  int64_t ldw;
  const float* bias;  // [n] or null
  float* y;           // [m, n], row stride ldy
  int64_t ldy;
  int64_t m, n, k;
  bool accumulate;
  bool bf16_dot;
};

// Each variant computes y[:, n_begin:n_end] of the GEMM. Every output is the
// same sequence of operations whatever m, n_begin and n_end are.
void GemmRangeScalar(const GemmArgs& a, int64_t n_begin, int64_t n_end);
void GemmRangeAvx2(const GemmArgs& a, int64_t n_begin, int64_t n_end);
void GemmRangeAvx512(const GemmArgs& a, int64_t n_begin, int64_t n_end);

// x [m, k] (row stride ldx) -> out [m, kpad] bf16, round to nearest even,
// zero padding from k to kpad. AVX512_BF16 only.
void ConvertToBf16Avx512Bf16(const float* x, int64_t ldx, int64_t m, int64_t k, uint16_t* out,
                             int64_t kpad);

// Attention helpers. Keys come in sub-blocks of up to kKeyTile slots,
// transposed once per work item (kt[i * kKeyTile + j] = element i of key j,
// zeros past the last key) so a query row scores all keys of a sub-block
// with d vector FMAs and no horizontal sums.
constexpr int64_t kKeyTile = 16;
struct AttentionVecOps {
  // s[j] = scale * dot(q, key j) for j in [0, kKeyTile). q: [d].
  void (*scores)(const float* q, const float* kt, int64_t d, float scale, float* s);
  // s[j] = scale * dot(q, k + j * k_stride) for j in [0, count), from the
  // keys in place (for few rows per key run, where transposing costs more
  // than it saves). REQUIRES: count <= kKeyTile.
  void (*scores_direct)(const float* q, const float* k, int64_t k_stride, int64_t count,
                        int64_t d, float scale, float* s);
  // s[j] = exp(s[j] - m) for j in [0, count); returns their sum.
  // REQUIRES: count <= kKeyTile, s[j] <= m.
  float (*exp_sum)(float* s, int64_t count, float m);
  // acc = acc * alpha + sum_j p[j] * (v + j * v_stride), over d elements.
  void (*accumulate_v)(float* acc, float alpha, const float* p, const float* v,
                       int64_t v_stride, int64_t count, int64_t d);
};
// out[i] = gate[i] / (1 + exp(-gate[i])) * up[i] for i in [0, n).
void SiluMulScalar(const float* gate, const float* up, float* out, int64_t n);
void SiluMulAvx2(const float* gate, const float* up, float* out, int64_t n);
void SiluMulAvx512(const float* gate, const float* up, float* out, int64_t n);

// Sum of x[0, n) in F32, for the read-bandwidth probe: the array is read as
// kSumStreams equal parts side by side, each into its own accumulator. One
// sequential stream per core leaves DRAM bandwidth unused (each hardware
// prefetch stream has a limited distance); a GEMV reads 4-8 weight rows side
// by side, and so does this. Summation order differs between variants.
constexpr int kSumStreams = 8;
float SumF32Scalar(const float* x, int64_t n);
float SumF32Avx2(const float* x, int64_t n);
float SumF32Avx512(const float* x, int64_t n);

extern const AttentionVecOps kAttentionScalar;
extern const AttentionVecOps kAttentionAvx2;
extern const AttentionVecOps kAttentionAvx512;

}  // namespace kestrel::kernels::cpu::isa

#endif  // KESTREL_KERNELS_CPU_ISA_KERNELS_H_
