// kernels::Ops on a CUDA stream: each op validates its scalar arguments on
// the host, then launches the kernel family that implements it (one header
// per family in kernels/cuda/) or cuBLAS. Nothing here synchronizes: errors
// found in device data go to the backend's DeviceError and come back from
// the next Device::Synchronize. Private to the CUDA backend.
#ifndef KESTREL_KERNELS_CUDA_CUDA_OPS_H_
#define KESTREL_KERNELS_CUDA_CUDA_OPS_H_

#include <memory>

#include "absl/status/statusor.h"
#include "kernels/cuda/cuda_compat.h"
#include "kernels/cuda/device_error.h"
#include "kernels/device.h"
#include "kernels/ops.h"

namespace kestrel::cuda {

class CublasGemm;

class CudaOps final : public kernels::Ops {
 public:
  // `device` allocates the ops' workspaces; `stream` and `error` are its
  // stream and error report. All must outlive the ops.
  static absl::StatusOr<std::unique_ptr<CudaOps>> Create(kernels::Device* device,
                                                         cudaStream_t stream,
                                                         DeviceError* error);
  ~CudaOps() override;

  absl::Status Gemm(const kernels::GemmParams& p) override;
  absl::Status RmsNorm(const float* x, int64_t x_stride, float* out, int64_t out_stride,
                       const float* weight, int64_t rows, int64_t dim, float eps) override;
  absl::Status RmsNormPerHead(float* x, int64_t x_stride, int64_t num_tokens, int64_t num_heads,
                              int64_t head_dim, const float* weight, float eps) override;
  absl::Status ApplyRope(float* q, int64_t q_stride, int64_t num_q_heads, float* k,
                         int64_t k_stride, int64_t num_kv_heads, const int32_t* positions,
                         int64_t num_tokens, int64_t head_dim, const float* cos_table,
                         const float* sin_table, int64_t max_positions) override;
  absl::Status SiluAndMul(const float* gate, int64_t gate_stride, const float* up,
                          int64_t up_stride, float* out, int64_t out_stride, int64_t rows,
                          int64_t dim) override;
  absl::Status EmbeddingGather(const void* table, kernels::DType table_dtype, int64_t vocab_size,
                               int64_t dim, const int32_t* ids, int64_t num_tokens, float* out,
                               int64_t out_stride) override;
  absl::Status WriteKvCache(const float* k, int64_t k_stride, const float* v, int64_t v_stride,
                            const int32_t* slot_mapping, int64_t num_tokens, int64_t num_kv_heads,
                            int64_t head_dim, void* k_cache, void* v_cache, int64_t num_blocks,
                            int64_t block_size, kernels::DType cache_dtype) override;
  absl::Status PagedAttention(const kernels::PagedAttentionParams& p) override;
  absl::Status GatherRows(const float* src, int64_t src_stride, const int32_t* rows,
                          int64_t num_rows, int64_t dim, float* dst, int64_t dst_stride) override;
  absl::Status CopyBlocks(void* base, int64_t num_arrays, int64_t array_stride,
                          int64_t block_bytes, int64_t num_blocks, const int32_t* pairs,
                          int64_t num_pairs) override;
  absl::Status Sample(const kernels::SampleParams& p) override;

 private:
  CudaOps(kernels::Device* device, cudaStream_t stream, DeviceError* error);
  // Grows `buffer` to at least `bytes` (workspaces are kept between steps).
  absl::Status Workspace(kernels::DeviceBuffer& buffer, size_t bytes, const char* what);

  kernels::Device* device_;
  cudaStream_t stream_;
  DeviceError* error_;
  std::unique_ptr<CublasGemm> gemm_;
  kernels::DeviceBuffer gemm_workspace_;
  kernels::DeviceBuffer attention_workspace_;
  kernels::DeviceBuffer sample_workspace_;
};

}  // namespace kestrel::cuda

#endif  // KESTREL_KERNELS_CUDA_CUDA_OPS_H_
