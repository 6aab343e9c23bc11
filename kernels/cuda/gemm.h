// Linear layers on the GPU: y[M,N] = x[M,K] · W[N,K]ᵀ (+bias) (+y), as
// kernels::GemmParams, through cuBLAS, or through the GEMV kernel (gemv.h)
// for decode batches (M <= CublasGemmOptions::gemv_max_rows).
//
// cuBLAS is column-major; row-major y = x·Wᵀ is column-major yᵀ = W·xᵀ, so
// one cublasGemmEx(OP_T, OP_N, N, M, K, W, ldw, x, ldx, y, ldy) computes it
// with no copies. F32 weights: F32 inputs, CUBLAS_COMPUTE_32F, pedantic math
// (no TF32), matching the CPU within ~1e-5. F16/BF16 weights: cuBLAS wants
// both inputs in one type, so x is first rounded to the weight dtype (nearest
// even) into a caller-provided workspace (GemmWorkspaceBytes); F32
// accumulation. This rounding (like the CPU's bf16_dot) is the one numerical
// difference from the GEMV path and the CPU default, which widen W exactly
// and keep x in F32. Bias is a small epilogue kernel after the GEMM;
// accumulate is beta = 1.
//
// Neither path promises batch invariance: the GEMV/cuBLAS switch, the
// activation rounding and cuBLAS's choice of algorithm depend on M.
#ifndef KESTREL_KERNELS_CUDA_GEMM_H_
#define KESTREL_KERNELS_CUDA_GEMM_H_

#include <cublas_v2.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "kernels/cuda/cuda_compat.h"
#include "kernels/cuda/gemv.h"
#include "kernels/dtype.h"

namespace kestrel::cuda {

// "CUBLAS_STATUS_INVALID_VALUE", ...; "CUBLAS_STATUS_UNKNOWN" for a value
// this build does not know.
const char* CublasStatusName(cublasStatus_t status);

// The outcome of a CublasGemm call. At most one of `cuda` and `cublas` is an
// error; `where` names the step that failed (a string literal).
struct GemmStatus {
  cudaError_t cuda = cudaSuccess;  // bad argument, failed allocation or launch
  cublasStatus_t cublas = CUBLAS_STATUS_SUCCESS;
  const char* where = "";  // e.g. "cublasGemmEx", "Gemm arguments"

  bool ok() const { return cuda == cudaSuccess && cublas == CUBLAS_STATUS_SUCCESS; }
  // "cublasGemmEx: CUBLAS_STATUS_NOT_SUPPORTED", "Gemm arguments: invalid
  // argument" (cudaGetErrorString); "ok" when ok().
  std::string Message() const;
};

// Bytes of `workspace` CublasGemm::Gemm needs for x[m, k] with w_dtype
// weights: m*k activations in the weight dtype for F16/BF16 (rounded up to
// 256 bytes), 0 for F32 or an empty product. Enough for either path.
size_t GemmWorkspaceBytes(kernels::DType w_dtype, int64_t m, int64_t k);

struct CublasGemmOptions {
  // Device memory handed to cuBLAS as its scratch (cublasSetWorkspace);
  // NVIDIA recommends 32 MiB on Hopper. 0: cuBLAS gets none.
  size_t cublas_workspace_bytes = size_t{32} << 20;
  // Gemm uses the GEMV kernel when 1 <= m <= gemv_max_rows; 0 always uses
  // cuBLAS. At most kGemvMaxRows.
  int64_t gemv_max_rows = kGemvMaxRows;
};

// A cuBLAS handle bound to one stream, with its workspace. Not thread-safe:
// one per stream (worker); every call is enqueued on that stream.
class CublasGemm {
 public:
  // Allocates the cuBLAS workspace, creates the handle, binds it to
  // `stream` (which must outlive the object). On error *out is unchanged.
  static GemmStatus Create(const CublasGemmOptions& options, cudaStream_t stream,
                           std::unique_ptr<CublasGemm>* out);
  ~CublasGemm();
  CublasGemm(const CublasGemm&) = delete;
  CublasGemm& operator=(const CublasGemm&) = delete;

  // y = x · Wᵀ (+ bias) (+ y if accumulate), as kernels::GemmParams:
  //   x:    [m, k] F32, row stride ldx >= k
  //   w:    [n, k] in w_dtype (kF32, kF16 or kBF16), row stride ldw >= k
  //   bias: [n] F32 or nullptr
  //   y:    [m, n] F32, row stride ldy >= n; must not overlap x or w
  //   workspace: device memory of workspace_bytes >=
  //     GemmWorkspaceBytes(w_dtype, m, k) (may be null when that is 0);
  //     busy until the stream reaches the end of this call.
  // Device pointers. cuda = cudaErrorInvalidValue for negative sizes, short
  // strides, another w_dtype, null pointers that would be read, a short
  // workspace, or sizes beyond cuBLAS's int; m == 0 or n == 0 does nothing;
  // k == 0 gives y = bias (or y + bias).
  GemmStatus Gemm(const float* x, int64_t ldx, const void* w, kernels::DType w_dtype, int64_t ldw,
                  const float* bias, float* y, int64_t ldy, int64_t m, int64_t n, int64_t k,
                  bool accumulate, void* workspace, size_t workspace_bytes);

 private:
  CublasGemm(const CublasGemmOptions& options, cudaStream_t stream)
      : options_(options), stream_(stream) {}

  GemmStatus RunCublas(const float* x, int64_t ldx, const void* w, kernels::DType w_dtype,
                       int64_t ldw, float* y, int64_t ldy, int64_t m, int64_t n, int64_t k,
                       bool accumulate, void* workspace);

  // Constant after construction.
  CublasGemmOptions options_;
  cudaStream_t stream_;                 // not owned
  cublasHandle_t handle_ = nullptr;     // owned
  void* cublas_workspace_ = nullptr;    // owned device memory
};

}  // namespace kestrel::cuda

#endif  // KESTREL_KERNELS_CUDA_GEMM_H_
