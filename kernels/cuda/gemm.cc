// CublasGemm: argument checks, the GEMV/cuBLAS choice, the cublasGemmEx call
// and its cast/bias kernels (see gemm.h). Host code only; the same source
// builds against NVIDIA's cuBLAS and against the emulation's shim
// (kernels/cuda/cublas_emulation).
#include "kernels/cuda/gemm.h"

#include <cublas_v2.h>

#include <climits>
#include <string>
#include <utility>

#include "kernels/cuda/gemm_kernels.h"
#include "kernels/cuda/gemv.h"

namespace kestrel::cuda {
namespace {

using kernels::DType;

GemmStatus CudaError(cudaError_t error, const char* where) {
  GemmStatus s;
  s.cuda = error;
  s.where = where;
  return s;
}

GemmStatus CublasError(cublasStatus_t status, const char* where) {
  GemmStatus s;
  s.cublas = status;
  s.where = where;
  return s;
}

cudaDataType CublasType(DType t) {
  switch (t) {
    case DType::kF16: return CUDA_R_16F;
    case DType::kBF16: return CUDA_R_16BF;
    default: return CUDA_R_32F;
  }
}

}  // namespace

const char* CublasStatusName(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

std::string GemmStatus::Message() const {
  if (ok()) return "ok";
  const char* what = cuda != cudaSuccess ? cudaGetErrorString(cuda) : CublasStatusName(cublas);
  return std::string(where) + ": " + what;
}

size_t GemmWorkspaceBytes(DType w_dtype, int64_t m, int64_t k) {
  if (w_dtype == DType::kF32 || m <= 0 || k <= 0) return 0;
  const size_t bytes = static_cast<size_t>(m) * static_cast<size_t>(k) * 2;
  return (bytes + 255) / 256 * 256;
}

GemmStatus CublasGemm::Create(const CublasGemmOptions& options, cudaStream_t stream,
                              std::unique_ptr<CublasGemm>* out) {
  if (out == nullptr || options.gemv_max_rows < 0 || options.gemv_max_rows > kGemvMaxRows) {
    return CudaError(cudaErrorInvalidValue, "CublasGemm options");
  }
  std::unique_ptr<CublasGemm> gemm(new CublasGemm(options, stream));
  if (options.cublas_workspace_bytes > 0) {
    if (cudaError_t e = cudaMalloc(&gemm->cublas_workspace_, options.cublas_workspace_bytes);
        e != cudaSuccess) {
      gemm->cublas_workspace_ = nullptr;
      return CudaError(e, "cudaMalloc of the cuBLAS workspace");
    }
  }
  if (cublasStatus_t s = cublasCreate(&gemm->handle_); s != CUBLAS_STATUS_SUCCESS) {
    gemm->handle_ = nullptr;
    return CublasError(s, "cublasCreate");
  }
  if (cublasStatus_t s = cublasSetStream(gemm->handle_, stream); s != CUBLAS_STATUS_SUCCESS) {
    return CublasError(s, "cublasSetStream");
  }
  if (cublasStatus_t s = cublasSetWorkspace(gemm->handle_, gemm->cublas_workspace_,
                                            options.cublas_workspace_bytes);
      s != CUBLAS_STATUS_SUCCESS) {
    return CublasError(s, "cublasSetWorkspace");
  }
  *out = std::move(gemm);
  return GemmStatus();
}

CublasGemm::~CublasGemm() {
  if (handle_ != nullptr) cublasDestroy(handle_);
  if (cublas_workspace_ != nullptr) cudaFree(cublas_workspace_);
}

GemmStatus CublasGemm::Gemm(const float* x, int64_t ldx, const void* w, DType w_dtype,
                            int64_t ldw, const float* bias, float* y, int64_t ldy, int64_t m,
                            int64_t n, int64_t k, bool accumulate, void* workspace,
                            size_t workspace_bytes) {
  constexpr const char* kArguments = "Gemm arguments";
  if (m < 0 || n < 0 || k < 0 || ldx < k || ldw < k || ldy < n ||
      !kernels::IsWeightDType(w_dtype)) {
    return CudaError(cudaErrorInvalidValue, kArguments);
  }
  if (m == 0 || n == 0) return GemmStatus();
  if (y == nullptr || (k > 0 && (x == nullptr || w == nullptr))) {
    return CudaError(cudaErrorInvalidValue, kArguments);
  }
  if (k == 0) {  // no product: y = bias, or y += bias
    if (accumulate && bias == nullptr) return GemmStatus();
    return CudaError(gemm_internal::BiasEpilogue(y, ldy, bias, m, n, !accumulate, stream_),
                     "bias kernel");
  }
  if (m <= options_.gemv_max_rows) {
    return CudaError(
        Gemv(x, ldx, w, w_dtype, ldw, bias, y, ldy, m, n, k, accumulate, stream_), "Gemv");
  }
  // cublasGemmEx takes int sizes and strides.
  if (m > INT_MAX || n > INT_MAX || ldx > INT_MAX || ldw > INT_MAX || ldy > INT_MAX) {
    return CudaError(cudaErrorInvalidValue, kArguments);
  }
  const size_t needed = GemmWorkspaceBytes(w_dtype, m, k);
  if (workspace_bytes < needed || (needed > 0 && workspace == nullptr)) {
    return CudaError(cudaErrorInvalidValue, kArguments);
  }
  GemmStatus s = RunCublas(x, ldx, w, w_dtype, ldw, y, ldy, m, n, k, accumulate, workspace);
  if (!s.ok() || bias == nullptr) return s;
  return CudaError(gemm_internal::BiasEpilogue(y, ldy, bias, m, n, false, stream_),
                   "bias kernel");
}

GemmStatus CublasGemm::RunCublas(const float* x, int64_t ldx, const void* w, DType w_dtype,
                                 int64_t ldw, float* y, int64_t ldy, int64_t m, int64_t n,
                                 int64_t k, bool accumulate, void* workspace) {
  const void* b = x;
  int64_t ldb = ldx;
  if (w_dtype != DType::kF32) {
    // cuBLAS multiplies two matrices of one type: round x to the weights'.
    if (cudaError_t e = gemm_internal::CastActivations(x, ldx, m, k, w_dtype, workspace, stream_);
        e != cudaSuccess) {
      return CudaError(e, "activation cast kernel");
    }
    b = workspace;
    ldb = k;
  }
  // F32: no TF32 or other reduced-precision shortcuts, so the GPU matches the
  // CPU's F32 GEMM within ~1e-5.
  const cublasMath_t math = w_dtype == DType::kF32 ? CUBLAS_PEDANTIC_MATH : CUBLAS_DEFAULT_MATH;
  if (cublasStatus_t s = cublasSetMathMode(handle_, math); s != CUBLAS_STATUS_SUCCESS) {
    return CublasError(s, "cublasSetMathMode");
  }
  const float alpha = 1.0f;
  const float beta = accumulate ? 1.0f : 0.0f;
  const cudaDataType type = CublasType(w_dtype);
  // Column-major yᵀ[n, m] = W[n, k] · xᵀ[k, m]: W is stored as a
  // column-major [k, n] matrix (ldw), hence OP_T; xᵀ as [k, m] (ldb), OP_N.
  const cublasStatus_t s = cublasGemmEx(
      handle_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
      static_cast<int>(k), &alpha, w, type, static_cast<int>(ldw), b, type, static_cast<int>(ldb),
      &beta, y, CUDA_R_32F, static_cast<int>(ldy), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (s != CUBLAS_STATUS_SUCCESS) return CublasError(s, "cublasGemmEx");
  return GemmStatus();
}

}  // namespace kestrel::cuda
