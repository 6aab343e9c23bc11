// Paged attention on the GPU over the paged KV cache, with the semantics of
// kernels::PagedAttentionParams (kernels/ops.h; layout: docs/kv_cache.md).
// Host launcher; plain C++ so callers need not use nvcc.
//
// Two kernels behind one entry point, picked per batch from max_query_len:
// - decode (max_query_len == 1): one block per (sequence, kv head, split-K
//   partition); the query heads of the kv head's GQA group share every K/V
//   load. Long contexts are cut into partitions whose partial softmax
//   states (max, sum, normalised output) a reduce kernel merges; the
//   partition count follows max_context_len and the SM count.
// - prefill (otherwise, mixed batches included): FlashAttention-2-style
//   tiles of query rows of one sequence and one kv head's group (rows are
//   (token, head) pairs), looping over 32-key tiles staged in shared memory
//   through the block table, with an online softmax in F32 (no tensor cores).
#ifndef KESTREL_KERNELS_CUDA_ATTENTION_H_
#define KESTREL_KERNELS_CUDA_ATTENTION_H_

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/cuda_compat.h"
#include "kernels/dtype.h"

namespace kestrel::cuda {

// kernels/cuda/device_error.h. Not included: its device function does not
// compile in host-only translation units of the nvcc build.
struct DeviceError;

// kernels::PagedAttentionParams plus what the GPU launch needs from the host.
// Every pointer is device memory.
struct PagedAttentionParams {
  const float* q = nullptr;  // [num_tokens, num_heads, head_dim], token stride q_stride
  int64_t q_stride = 0;      // >= num_heads * head_dim
  float* out = nullptr;      // [num_tokens, num_heads, head_dim], token stride out_stride
  int64_t out_stride = 0;    // >= num_heads * head_dim
  // K [num_blocks, num_kv_heads, head_dim, block_size] (keys transposed),
  // V [num_blocks, num_kv_heads, block_size, head_dim], of kv_dtype.
  const void* k_cache = nullptr;
  const void* v_cache = nullptr;
  kernels::DType kv_dtype = kernels::DType::kF32;  // kF32 or kBF16
  int64_t num_blocks = 0;
  int64_t block_size = 16;  // 1..256
  int64_t num_seqs = 0;
  const int32_t* query_start = nullptr;   // [num_seqs + 1], cumulative; query_start[0] = 0
  const int32_t* context_lens = nullptr;  // [num_seqs], cached + new tokens per sequence
  const int32_t* block_tables = nullptr;  // [num_seqs, block_table_stride]
  int64_t block_table_stride = 0;  // >= ceil(max_context_len / block_size)
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;  // divides num_heads
  int64_t head_dim = 0;      // 1..512
  float scale = 0.0f;        // 0 means 1/sqrt(head_dim)
  int64_t sliding_window = 0;  // 0 means unlimited

  // Host-known bounds of the device arrays above, so the launcher picks the
  // kernel and the grid without reading device memory:
  // max over s of (query_start[s+1] - query_start[s]) and of context_lens[s].
  // A sequence that breaks them (or has context_lens[s] < its new tokens) is
  // skipped and reported as kBlockId with index = s, value = its
  // context_len, limit = max_context_len.
  int32_t max_query_len = 0;
  int32_t max_context_len = 0;

  // Decode split-K scratch: PagedAttentionWorkspaceBytes(...) bytes (null and
  // 0 when that is 0). Not used by prefill.
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  // Decode partition length in tokens: 0 picks it from max_context_len and
  // the SM count; otherwise a multiple of 32 (tests force boundaries).
  int32_t partition_tokens = 0;

  // A block table entry outside [0, num_blocks) in a block that is read is
  // recorded here (kBlockId, index = s * block_table_stride + logical block,
  // value = the id, limit = num_blocks) and its keys are skipped: that
  // sequence's output is then the attention over its other keys (zeros if
  // none), always finite. May be null.
  DeviceError* error = nullptr;
};

// Bytes of workspace PagedAttention needs for any decode batch of at most
// num_seqs sequences and max_context_len tokens with these head counts on
// the current device (0: no split-K; then workspace may be null).
// partition_tokens as in PagedAttentionParams.
size_t PagedAttentionWorkspaceBytes(int64_t num_seqs, int64_t num_heads, int64_t head_dim,
                                    int32_t max_context_len, int32_t partition_tokens = 0);

// Runs the attention on `stream`. Returns cudaErrorInvalidValue for bad
// scalar arguments (sizes, strides, dtype, scale, null pointers, a
// block_table_stride below ceil(max_context_len / block_size), a workspace
// smaller than needed); otherwise the launch error. num_seqs == 0 or
// max_query_len == 0 launches nothing.
cudaError_t PagedAttention(const PagedAttentionParams& p, cudaStream_t stream);

}  // namespace kestrel::cuda

#endif  // KESTREL_KERNELS_CUDA_ATTENTION_H_
