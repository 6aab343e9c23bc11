#include "kernels/profiling_backend.h"

#include <chrono>
#include <utility>

#include "absl/base/internal/raw_logging.h"

namespace kestrel::kernels {

std::string_view OpKindName(OpKind kind) {
  switch (kind) {
    case OpKind::kGemm: return "Gemm";
    case OpKind::kRmsNorm: return "RmsNorm";
    case OpKind::kRmsNormPerHead: return "RmsNormPerHead";
    case OpKind::kApplyRope: return "ApplyRope";
    case OpKind::kSiluAndMul: return "SiluAndMul";
    case OpKind::kEmbeddingGather: return "EmbeddingGather";
    case OpKind::kWriteKvCache: return "WriteKvCache";
    case OpKind::kPagedAttention: return "PagedAttention";
    case OpKind::kGatherRows: return "GatherRows";
    case OpKind::kCopyBlocks: return "CopyBlocks";
    case OpKind::kSample: return "Sample";
  }
  return "unknown op";
}

double OpProfile::total_seconds() const {
  double s = 0;
  for (const OpTime& t : ops) s += t.seconds;
  return s;
}

int64_t OpProfile::total_calls() const {
  int64_t n = 0;
  for (const OpTime& t : ops) n += t.calls;
  return n;
}

// Every method forwards to `inner`; Timed adds the time while enabled.
class ProfilingBackend::TimedOps final : public Ops {
 public:
  TimedOps(Ops* inner, Device* device) : inner_(inner), device_(device) {}

  bool enabled = false;
  OpProfile profile;

  absl::Status Gemm(const GemmParams& p) override {
    return Timed(OpKind::kGemm, [&] { return inner_->Gemm(p); });
  }
  absl::Status RmsNorm(const float* x, int64_t x_stride, float* out, int64_t out_stride,
                       const float* weight, int64_t rows, int64_t dim, float eps) override {
    return Timed(OpKind::kRmsNorm, [&] {
      return inner_->RmsNorm(x, x_stride, out, out_stride, weight, rows, dim, eps);
    });
  }
  absl::Status RmsNormPerHead(float* x, int64_t x_stride, int64_t num_tokens, int64_t num_heads,
                              int64_t head_dim, const float* weight, float eps) override {
    return Timed(OpKind::kRmsNormPerHead, [&] {
      return inner_->RmsNormPerHead(x, x_stride, num_tokens, num_heads, head_dim, weight, eps);
    });
  }
  absl::Status ApplyRope(float* q, int64_t q_stride, int64_t num_q_heads, float* k,
                         int64_t k_stride, int64_t num_kv_heads, const int32_t* positions,
                         int64_t num_tokens, int64_t head_dim, const float* cos_table,
                         const float* sin_table, int64_t max_positions) override {
    return Timed(OpKind::kApplyRope, [&] {
      return inner_->ApplyRope(q, q_stride, num_q_heads, k, k_stride, num_kv_heads, positions,
                               num_tokens, head_dim, cos_table, sin_table, max_positions);
    });
  }
  absl::Status SiluAndMul(const float* gate, int64_t gate_stride, const float* up,
                          int64_t up_stride, float* out, int64_t out_stride, int64_t rows,
                          int64_t dim) override {
    return Timed(OpKind::kSiluAndMul, [&] {
      return inner_->SiluAndMul(gate, gate_stride, up, up_stride, out, out_stride, rows, dim);
    });
  }
  absl::Status EmbeddingGather(const void* table, DType table_dtype, int64_t vocab_size,
                               int64_t dim, const int32_t* ids, int64_t num_tokens, float* out,
                               int64_t out_stride) override {
    return Timed(OpKind::kEmbeddingGather, [&] {
      return inner_->EmbeddingGather(table, table_dtype, vocab_size, dim, ids, num_tokens, out,
                                     out_stride);
    });
  }
  absl::Status WriteKvCache(const float* k, int64_t k_stride, const float* v, int64_t v_stride,
                            const int32_t* slot_mapping, int64_t num_tokens,
                            int64_t num_kv_heads, int64_t head_dim, void* k_cache,
                            void* v_cache, int64_t num_blocks, int64_t block_size,
                            DType cache_dtype) override {
    return Timed(OpKind::kWriteKvCache, [&] {
      return inner_->WriteKvCache(k, k_stride, v, v_stride, slot_mapping, num_tokens,
                                  num_kv_heads, head_dim, k_cache, v_cache, num_blocks,
                                  block_size, cache_dtype);
    });
  }
  absl::Status PagedAttention(const PagedAttentionParams& p) override {
    return Timed(OpKind::kPagedAttention, [&] { return inner_->PagedAttention(p); });
  }
  absl::Status GatherRows(const float* src, int64_t src_stride, const int32_t* rows,
                          int64_t num_rows, int64_t dim, float* dst,
                          int64_t dst_stride) override {
    return Timed(OpKind::kGatherRows, [&] {
      return inner_->GatherRows(src, src_stride, rows, num_rows, dim, dst, dst_stride);
    });
  }
  absl::Status CopyBlocks(void* base, int64_t num_arrays, int64_t array_stride,
                          int64_t block_bytes, int64_t num_blocks, const int32_t* pairs,
                          int64_t num_pairs) override {
    return Timed(OpKind::kCopyBlocks, [&] {
      return inner_->CopyBlocks(base, num_arrays, array_stride, block_bytes, num_blocks, pairs,
                                num_pairs);
    });
  }
  absl::Status Sample(const SampleParams& p) override {
    return Timed(OpKind::kSample, [&] { return inner_->Sample(p); });
  }

 private:
  using Clock = std::chrono::steady_clock;

  // Synchronizes before the op, so earlier queued work is not charged to
  // it, and after, so its own execution is. A failed op still counts (its
  // status is returned as is); a failed sync is returned when the op was OK.
  template <typename Call>
  absl::Status Timed(OpKind kind, const Call& call) {
    if (!enabled) return call();
    if (absl::Status s = device_->Synchronize(); !s.ok()) return s;
    const Clock::time_point start = Clock::now();
    absl::Status status = call();
    absl::Status synced = device_->Synchronize();
    OpTime& t = profile[kind];
    ++t.calls;
    t.seconds += std::chrono::duration<double>(Clock::now() - start).count();
    return status.ok() ? synced : status;
  }

  Ops* inner_;       // not owned: the wrapped backend's
  Device* device_;   // not owned: the wrapped backend's
};

ProfilingBackend::ProfilingBackend(std::unique_ptr<Backend> inner) : inner_(std::move(inner)) {
  ABSL_RAW_CHECK(inner_ != nullptr, "ProfilingBackend needs a backend to wrap");
  ops_ = std::make_unique<TimedOps>(&inner_->ops(), &inner_->device());
}

ProfilingBackend::~ProfilingBackend() = default;

Ops& ProfilingBackend::ops() { return *ops_; }

std::string ProfilingBackend::Describe() const { return inner_->Describe() + " (op profiling)"; }

void ProfilingBackend::set_enabled(bool enabled) { ops_->enabled = enabled; }
bool ProfilingBackend::enabled() const { return ops_->enabled; }
const OpProfile& ProfilingBackend::profile() const { return ops_->profile; }
void ProfilingBackend::Reset() { ops_->profile = OpProfile(); }

}  // namespace kestrel::kernels
