// The CPU backend of kernels/ops.h: a thin forwarder to the per-family CPU
// kernels (see cpu_ops.h).
#include "kernels/cpu/cpu_ops.h"

#include "kernels/cpu/activation.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/kv_cache.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/residual.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/sampling.h"

namespace kestrel::kernels::cpu {
namespace {

class CpuOps final : public Ops {
 public:
  explicit CpuOps(const CpuOpsOptions& options) : options_(options) {}

  absl::Status Gemm(const GemmParams& p) override {
    return cpu::Gemm(p, options_.pool, options_.gemm_isa);
  }
  absl::Status RmsNorm(const float* x, int64_t x_stride, float* out, int64_t out_stride,
                       const float* weight, int64_t rows, int64_t dim, float eps) override {
    return cpu::RmsNorm(x, x_stride, out, out_stride, weight, rows, dim, eps);
  }
  absl::Status RmsNormPerHead(float* x, int64_t x_stride, int64_t num_tokens, int64_t num_heads,
                              int64_t head_dim, const float* weight, float eps) override {
    return cpu::RmsNormPerHead(x, x_stride, num_tokens, num_heads, head_dim, weight, eps);
  }
  absl::Status ApplyRope(float* q, int64_t q_stride, int64_t num_q_heads, float* k,
                         int64_t k_stride, int64_t num_kv_heads, const int32_t* positions,
                         int64_t num_tokens, int64_t head_dim, const float* cos_table,
                         const float* sin_table, int64_t max_positions) override {
    return cpu::ApplyRope(q, q_stride, num_q_heads, k, k_stride, num_kv_heads, positions,
                          num_tokens, head_dim, cos_table, sin_table, max_positions);
  }
  absl::Status SiluAndMul(const float* gate, int64_t gate_stride, const float* up,
                          int64_t up_stride, float* out, int64_t out_stride, int64_t rows,
                          int64_t dim) override {
    return cpu::SiluAndMul(gate, gate_stride, up, up_stride, out, out_stride, rows, dim,
                           options_.pool);
  }
  absl::Status EmbeddingGather(const void* table, DType table_dtype, int64_t vocab_size,
                               int64_t dim, const int32_t* ids, int64_t num_tokens, float* out,
                               int64_t out_stride) override {
    return cpu::EmbeddingGather(table, table_dtype, vocab_size, dim, ids, num_tokens, out,
                                out_stride);
  }
  absl::Status Add(const float* a, int64_t a_stride, const float* b, int64_t b_stride, float* out,
                   int64_t out_stride, int64_t rows, int64_t dim) override {
    return cpu::Add(a, a_stride, b, b_stride, out, out_stride, rows, dim);
  }
  absl::Status WriteKvCache(const float* k, int64_t k_stride, const float* v, int64_t v_stride,
                            const int32_t* slot_mapping, int64_t num_tokens,
                            int64_t num_kv_heads, int64_t head_dim, void* k_cache,
                            void* v_cache, int64_t num_blocks, int64_t block_size,
                            DType cache_dtype) override {
    return cpu::WriteKvCache(k, k_stride, v, v_stride, slot_mapping, num_tokens, num_kv_heads,
                             head_dim, k_cache, v_cache, num_blocks, block_size, cache_dtype);
  }
  absl::Status PagedAttention(const PagedAttentionParams& p) override {
    return cpu::PagedAttention(p, options_.pool);
  }
  absl::Status Softmax(const float* logits, int64_t in_stride, float* out, int64_t out_stride,
                       int64_t rows, int64_t vocab) override {
    return cpu::Softmax(logits, in_stride, out, out_stride, rows, vocab);
  }
  absl::Status LogSoftmax(const float* logits, int64_t in_stride, float* out, int64_t out_stride,
                          int64_t rows, int64_t vocab) override {
    return cpu::LogSoftmax(logits, in_stride, out, out_stride, rows, vocab);
  }
  absl::Status Argmax(const float* logits, int64_t in_stride, int64_t rows, int64_t vocab,
                      int32_t* ids) override {
    return cpu::Argmax(logits, in_stride, rows, vocab, ids);
  }

 private:
  const CpuOpsOptions options_;
};

}  // namespace

std::unique_ptr<Ops> CreateCpuOps(const CpuOpsOptions& options) {
  return std::make_unique<CpuOps>(options);
}

}  // namespace kestrel::kernels::cpu
