// Internal: the entry points each ISA variant (isa_scalar.cc, isa_avx2.cc,
// isa_avx512.cc) provides. Each variant is the op-family templates
// (isa_gemm_impl.h, isa_attention_impl.h, isa_activation_impl.h,
// isa_sum_impl.h) instantiated with its traits (isa_traits_*.h). Plain
// structs and functions only: the SIMD translation units include nothing
// but intrinsics headers and these internal headers (see BUILD.bazel).
#ifndef KESTREL_KERNELS_CPU_ISA_KERNELS_H_
#define KESTREL_KERNELS_CPU_ISA_KERNELS_H_

#include <cstddef>
#include <cstdint>

namespace kestrel::kernels::cpu::isa {

enum WeightType : int { kWF32 = 0, kWF16 = 1, kWBF16 = 2, kWI8 = 3 };

// Int8 activations are padded to whole steps of this many bytes (the widest
// traits' kI8Step), so the int8 kernels need no masked loads on x.
constexpr int64_t kI8Pad = 64;

// A validated GEMM (see GemmParams in kernels/ops.h).
struct GemmArgs {
  const float* x;   // [m, k], row stride ldx
  int64_t ldx;
  // bf16_dot only (variants with an IsaTable::convert_to_bf16 on this CPU):
  // x rounded to bf16, [m, kpad] with kpad = k rounded up to 32 and zeros in
  // the padding; row stride ldxb.
  const uint16_t* xb;
  int64_t ldxb;
  // BF16 weights without bf16_dot (variants whose traits set kSplitBf16;
  // IsaTable::bf16_split_lanes): x with each group of
  // 2*L elements (L = vector lanes: 16 for AVX-512, 8 for AVX2) stored as
  // its L even-index elements then its L odd-index elements, [m, kpad2]
  // with kpad2 = k rounded up to 2*L, zero padded; row stride ldxd. A
  // 32-bit lane of bf16 weights then widens to two F32 vectors with one
  // shift and one AND, matching the even and odd halves.
  const float* xd;
  int64_t ldxd;
  // kWI8 weights only: x quantized per row (QuantizeI8*): xq [m, ldxq]
  // int8 in [-127, 127], ldxq = k rounded up to kI8Pad, zero padded;
  // x_scale [m] (x ~= x_scale[i] * xq[i, :]); x_sum [m] = sum of row i of xq.
  const int8_t* xq;
  int64_t ldxq;
  const float* x_scale;
  const int32_t* x_sum;
  const float* w_scale;  // kWI8: [n], w[j, :] ~= w_scale[j] * wq[j, :]
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
// zero padding from k to kpad (GemmArgs::xb). REQUIRES: kpad a multiple of
// 32, >= k. The AVX-512 one needs AVX512_BF16.
void ConvertToBf16Scalar(const float* x, int64_t ldx, int64_t m, int64_t k, uint16_t* out,
                         int64_t kpad);
void ConvertToBf16Avx2(const float* x, int64_t ldx, int64_t m, int64_t k, uint16_t* out,
                       int64_t kpad);
void ConvertToBf16Avx512(const float* x, int64_t ldx, int64_t m, int64_t k, uint16_t* out,
                         int64_t kpad);

// Symmetric per-row int8 quantization of x [m, k] (row stride ldx) for kWI8
// GEMMs: scale[i] = max_k |x[i, k]| / 127 (0 for an all-zero row),
// out[i, k] = round-half-even(x[i, k] * (127 / max)) in [-127, 127], zeros
// from k to kpad; sum[i] = sum of out[i, :]. Every variant gives the same
// bytes (the max is order-independent, the product and the rounding are one
// IEEE operation each). REQUIRES: kpad a multiple of kI8Pad, >= k;
// k <= 65536 (the sum is accumulated exactly in F32).
void QuantizeI8Scalar(const float* x, int64_t ldx, int64_t m, int64_t k, int8_t* out,
                      int64_t kpad, float* scale, int32_t* sum);
void QuantizeI8Avx2(const float* x, int64_t ldx, int64_t m, int64_t k, int8_t* out,
                    int64_t kpad, float* scale, int32_t* sum);
void QuantizeI8Avx512(const float* x, int64_t ldx, int64_t m, int64_t k, int8_t* out,
                      int64_t kpad, float* scale, int32_t* sum);

// Attention helpers. Keys come in runs of up to kKeyTile slots of one
// block; the K cache stores each block's keys transposed (element i of key
// j at i * block_size + j), so a query row scores a whole run with d vector
// FMAs and no horizontal sums.
constexpr int64_t kKeyTile = 16;

// One run of a BF16 cache for the query rows of one kv head, with bf16 dot
// products (vdpbf16ps): scores from q rounded to bf16 (scale folded in),
// one online-softmax step per row over the whole run, and p rounded to
// bf16 for the weighted sum of V (the denominator sums the same rounded p).
// A run covers the kDotRunSlots positions [R, R + kDotRunSlots) for R a
// multiple of kDotRunSlots; slot j is position R + j. Its keys come in
// segments (one per block and kKeyTile-aligned slot group they touch), and
// everything a row computes is laid out by slot, so each row's arithmetic
// is the same whatever the other rows are and however the blocks split the
// run (batch and tile invariance).
constexpr int64_t kMaxAttentionHeadDim = 512;
constexpr int64_t kDotRunSlots = 64;  // a multiple of kKeyTile; divides 256
struct Bf16DotSegment {
  const uint16_t* k;  // the first key's column in its K tile [d, k_stride]
  const uint16_t* v;  // the first key's row of V [count, d] (row stride d)
  int32_t slot;       // run slot of the first key
  int32_t count;      // >= 1 keys; never crosses a multiple of kKeyTile slots
};
struct Bf16DotRun {
  // [num_segs] in slot order, contiguous slots: the keys that exist (and
  // that some row may see); nothing else of the cache is read.
  const Bf16DotSegment* segs;
  int64_t num_segs;  // >= 1
  int64_t k_stride;  // block_size
  int64_t d;         // head dim, 1..kMaxAttentionHeadDim
  int64_t rows;
  // [rows, q_stride] 32-bit words: element pairs (2i, 2i+1) of q * scale
  // rounded to bf16, the even element in the low half (d odd: the last
  // pair's high half is 0).
  const uint32_t* q;
  int64_t q_stride;  // >= ceil(d / 2)
  // [rows]: the run slots [lo, hi] each row may see (causal and sliding
  // window); a row whose range misses the segments is left alone.
  const int32_t* lo;
  const int32_t* hi;
  float* m;    // [rows] running max of the scores
  float* l;    // [rows] running denominator
  float* acc;  // [rows, d] unnormalised output, row stride acc_stride
  int64_t acc_stride;
  // [num_prefetch] regions of prefetch_bytes each (the next run's blocks),
  // issued to L2 while this run is computed.
  const void* const* prefetch;
  int64_t num_prefetch;
  int64_t prefetch_bytes;
};

struct AttentionVecOps {
  // s[j] = scale * sum_i q[i] * kt[i * kt_stride + j] for j in [0, count),
  // s[j] = 0 for j in [count, kKeyTile). q: [d]; kt: the keys transposed
  // (as the K cache stores them), reading only columns j < count.
  // REQUIRES: 1 <= count <= kKeyTile.
  void (*scores)(const float* q, const float* kt, int64_t kt_stride, int64_t count, int64_t d,
                 float scale, float* s);
  // The same over a bf16 cache (each key element widened to F32 exactly).
  void (*scores_bf16)(const float* q, const uint16_t* kt, int64_t kt_stride, int64_t count,
                      int64_t d, float scale, float* s);
  // One online-softmax step of a row over `count` scaled scores s[0, count):
  // m_new = max(*m, max_j s[j]); s[j] = exp(s[j] - m_new);
  // *l = *l * alpha + sum_j s[j]; *m = m_new. Returns alpha, the factor for
  // the row's earlier output: exp(m_old - m_new), 0 when m_old = -inf,
  // exactly 1 when the max is unchanged. s may be read up to s[kKeyTile - 1]
  // (values past count are ignored). REQUIRES: 1 <= count <= kKeyTile.
  float (*softmax_step)(float* s, int64_t count, float* m, float* l);
  // acc = acc * alpha + sum_j p[j] * (v + j * v_stride), over d elements.
  void (*accumulate_v)(float* acc, float alpha, const float* p, const float* v,
                       int64_t v_stride, int64_t count, int64_t d);
  void (*accumulate_v_bf16)(float* acc, float alpha, const float* p, const uint16_t* v,
                            int64_t v_stride, int64_t count, int64_t d);
  // See Bf16DotRun (AVX2 and scalar emulate vdpbf16ps exactly).
  void (*bf16_dot_run)(const Bf16DotRun& run);
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
