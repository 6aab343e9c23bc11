#include "kernels/cuda/cuda_ops.h"

#include <algorithm>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/cuda/activation.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/copy.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/kv_cache.h"
#include "kernels/cuda/norm.h"
#include "kernels/cuda/rope.h"
#include "kernels/cuda/sampling.h"

namespace kestrel::cuda {
namespace {

// Sampling keeps this many bytes of rows in flight at most (the workspace
// holds a working copy of each row and two sort buffers: 20 bytes per
// vocabulary entry); rows beyond it run in turn within the same launch.
constexpr size_t kMaxSampleWorkspaceBytes = size_t{256} << 20;

}  // namespace

CudaOps::CudaOps(kernels::Device* device, cudaStream_t stream, DeviceError* error)
    : device_(device), stream_(stream), error_(error) {}

CudaOps::~CudaOps() = default;

absl::StatusOr<std::unique_ptr<CudaOps>> CudaOps::Create(kernels::Device* device,
                                                         cudaStream_t stream,
                                                         DeviceError* error) {
  std::unique_ptr<CudaOps> ops(new CudaOps(device, stream, error));
  const GemmStatus s = CublasGemm::Create({}, stream, &ops->gemm_);
  if (!s.ok()) return absl::InternalError(absl::StrCat("creating cuBLAS: ", s.Message()));
  return ops;
}

absl::Status CudaOps::Workspace(kernels::DeviceBuffer& buffer, size_t bytes, const char* what) {
  if (buffer.size() >= bytes) return absl::OkStatus();
  const size_t grown = std::max(bytes, buffer.size() + buffer.size() / 2);
  buffer = kernels::DeviceBuffer();  // free first: the device may be full
  ASSIGN_OR_RETURN(buffer, device_->Allocate(grown, what));
  return absl::OkStatus();
}

absl::Status CudaOps::Gemm(const kernels::GemmParams& p) {
  // BF16/F16 weights through cuBLAS round x to the weight type (as
  // bf16_dot does on the CPU); the GEMV path for decode batches widens the
  // weights exactly. Either way bf16_dot is moot here.
  if (p.w_dtype == kernels::DType::kI8) {
    return absl::UnimplementedError(
        "gemm: int8 weights (--quantization=int8) have no CUDA kernel yet; they run on the CPU "
        "backend only");
  }
  const size_t need = GemmWorkspaceBytes(p.w_dtype, p.m, p.k);
  RETURN_IF_ERROR(Workspace(gemm_workspace_, need, "GEMM activations"));
  const GemmStatus s = gemm_->Gemm(p.x, p.ldx, p.w, p.w_dtype, p.ldw, p.bias, p.y, p.ldy, p.m,
                                   p.n, p.k, p.accumulate, gemm_workspace_.data(),
                                   gemm_workspace_.size());
  if (s.ok()) return absl::OkStatus();
  if (s.cuda != cudaSuccess) return CudaStatus(s.cuda, absl::StrCat("gemm: ", s.where));
  return absl::InternalError(absl::StrCat("gemm: ", s.Message()));
}

absl::Status CudaOps::RmsNorm(const float* x, int64_t x_stride, float* out, int64_t out_stride,
                              const float* weight, int64_t rows, int64_t dim, float eps) {
  return CudaStatus(cuda::RmsNorm(x, x_stride, out, out_stride, weight, rows, dim, eps, stream_),
                    "rms_norm");
}

absl::Status CudaOps::RmsNormPerHead(float* x, int64_t x_stride, int64_t num_tokens,
                                     int64_t num_heads, int64_t head_dim, const float* weight,
                                     float eps) {
  return CudaStatus(cuda::RmsNormPerHead(x, x_stride, num_tokens, num_heads, head_dim, weight,
                                         eps, stream_),
                    "rms_norm_per_head");
}

absl::Status CudaOps::ApplyRope(float* q, int64_t q_stride, int64_t num_q_heads, float* k,
                                int64_t k_stride, int64_t num_kv_heads, const int32_t* positions,
                                int64_t num_tokens, int64_t head_dim, const float* cos_table,
                                const float* sin_table, int64_t max_positions) {
  return CudaStatus(cuda::ApplyRope(q, q_stride, num_q_heads, k, k_stride, num_kv_heads, positions,
                                    num_tokens, head_dim, cos_table, sin_table, max_positions,
                                    error_, stream_),
                    "rope");
}

absl::Status CudaOps::SiluAndMul(const float* gate, int64_t gate_stride, const float* up,
                                 int64_t up_stride, float* out, int64_t out_stride, int64_t rows,
                                 int64_t dim) {
  return CudaStatus(
      cuda::SiluAndMul(gate, gate_stride, up, up_stride, out, out_stride, rows, dim, stream_),
      "silu_and_mul");
}

absl::Status CudaOps::EmbeddingGather(const void* table, kernels::DType table_dtype,
                                      int64_t vocab_size, int64_t dim, const int32_t* ids,
                                      int64_t num_tokens, float* out, int64_t out_stride) {
  return CudaStatus(cuda::EmbeddingGather(table, table_dtype, vocab_size, dim, ids, num_tokens,
                                          out, out_stride, error_, stream_),
                    "embedding");
}

absl::Status CudaOps::WriteKvCache(const float* k, int64_t k_stride, const float* v,
                                   int64_t v_stride, const int32_t* slot_mapping,
                                   int64_t num_tokens, int64_t num_kv_heads, int64_t head_dim,
                                   void* k_cache, void* v_cache, int64_t num_blocks,
                                   int64_t block_size, kernels::DType cache_dtype) {
  return CudaStatus(cuda::WriteKvCache(k, k_stride, v, v_stride, slot_mapping, num_tokens,
                                       num_kv_heads, head_dim, k_cache, v_cache, num_blocks,
                                       block_size, cache_dtype, error_, stream_),
                    "kv cache write");
}

absl::Status CudaOps::PagedAttention(const kernels::PagedAttentionParams& p) {
  constexpr int64_t kIntMax = std::numeric_limits<int32_t>::max();
  if (p.max_query_len <= 0 || p.max_context_len <= 0 || p.max_query_len > kIntMax ||
      p.max_context_len > kIntMax) {
    return absl::InvalidArgumentError(absl::StrCat(
        "attention: the CUDA backend needs the step's max_query_len and max_context_len, got ",
        p.max_query_len, " and ", p.max_context_len));
  }
  cuda::PagedAttentionParams a;
  a.q = p.q;
  a.q_stride = p.q_stride;
  a.out = p.out;
  a.out_stride = p.out_stride;
  a.k_cache = p.k_cache;
  a.v_cache = p.v_cache;
  a.kv_dtype = p.kv_dtype;
  a.num_blocks = p.num_blocks;
  a.block_size = p.block_size;
  a.num_seqs = p.num_seqs;
  a.query_start = p.query_start;
  a.context_lens = p.context_lens;
  a.block_tables = p.block_tables;
  a.block_table_stride = p.block_table_stride;
  a.num_heads = p.num_heads;
  a.num_kv_heads = p.num_kv_heads;
  a.head_dim = p.head_dim;
  a.scale = p.scale;
  a.sliding_window = p.sliding_window;
  a.max_query_len = static_cast<int32_t>(p.max_query_len);
  a.max_context_len = static_cast<int32_t>(p.max_context_len);
  a.error = error_;
  if (a.max_query_len == 1) {
    const size_t need = PagedAttentionWorkspaceBytes(p.num_seqs, p.num_heads, p.head_dim,
                                                     a.max_context_len);
    RETURN_IF_ERROR(Workspace(attention_workspace_, need, "attention split-K partials"));
    a.workspace = attention_workspace_.data();
    a.workspace_bytes = attention_workspace_.size();
  }
  return CudaStatus(cuda::PagedAttention(a, stream_), "attention");
}

absl::Status CudaOps::GatherRows(const float* src, int64_t src_stride, const int32_t* rows,
                                 int64_t num_rows, int64_t dim, float* dst, int64_t dst_stride) {
  // The op does not know how many rows src has (the runner checked the
  // indices on the host); the kernel still refuses negative ones.
  constexpr int64_t kUnknownRows = std::numeric_limits<int32_t>::max();
  return CudaStatus(cuda::GatherRows(src, src_stride, kUnknownRows, rows, num_rows, dim, dst,
                                     dst_stride, error_, stream_),
                    "gather rows");
}

absl::Status CudaOps::CopyBlocks(void* base, int64_t num_arrays, int64_t array_stride,
                                 int64_t block_bytes, int64_t num_blocks, const int32_t* pairs,
                                 int64_t num_pairs) {
  return CudaStatus(cuda::CopyBlocks(base, num_arrays, array_stride, block_bytes, num_blocks,
                                     pairs, num_pairs, error_, stream_),
                    "copy blocks");
}

absl::Status CudaOps::Sample(const kernels::SampleParams& p) {
  if (p.num_rows <= 0) return absl::OkStatus();
  const size_t per_row = SampleWorkspaceBytes(p.vocab, 1);
  if (per_row == 0) {
    return absl::InvalidArgumentError(absl::StrCat("sample: vocab ", p.vocab, " is not positive"));
  }
  const int64_t in_flight =
      std::max<int64_t>(1, std::min<int64_t>(p.num_rows, kMaxSampleWorkspaceBytes / per_row));
  RETURN_IF_ERROR(
      Workspace(sample_workspace_, SampleWorkspaceBytes(p.vocab, in_flight), "sampling rows"));
  return CudaStatus(cuda::Sample(p, sample_workspace_.data(), sample_workspace_.size(), error_,
                                 stream_),
                    "sample");
}

}  // namespace kestrel::cuda
