// cublasGemmEx and its handle for the emulated CUDA build: a reference loop
// on host memory (see cublas_v2.h).
#include <cublas_v2.h>

#include <cstdint>

#include "kernels/dtype.h"

struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasMath_t math_mode = CUBLAS_DEFAULT_MATH;
};

namespace {

using kestrel::kernels::Bf16ToF32;
using kestrel::kernels::F16ToF32;

// Element i of a matrix stored as `type`.
float Load(const void* data, cudaDataType type, int64_t i) {
  switch (type) {
    case CUDA_R_32F: return static_cast<const float*>(data)[i];
    case CUDA_R_16F: return F16ToF32(static_cast<const uint16_t*>(data)[i]);
    case CUDA_R_16BF: return Bf16ToF32(static_cast<const uint16_t*>(data)[i]);
  }
  return 0.0f;  // unreachable: types are checked before any load
}

bool IsTranspose(cublasOperation_t op) { return op == CUBLAS_OP_T || op == CUBLAS_OP_C; }

bool SupportedTypes(cudaDataType a, cudaDataType b, cudaDataType c,
                    cublasComputeType_t compute) {
  if (c != CUDA_R_32F || a != b) return false;
  switch (a) {
    case CUDA_R_32F:
      return compute == CUBLAS_COMPUTE_32F || compute == CUBLAS_COMPUTE_32F_PEDANTIC ||
             compute == CUBLAS_COMPUTE_32F_FAST_TF32;
    case CUDA_R_16F:
    case CUDA_R_16BF:
      return compute == CUBLAS_COMPUTE_32F || compute == CUBLAS_COMPUTE_32F_PEDANTIC;
  }
  return false;
}

int MaxInt(int a, int b) { return a > b ? a : b; }

}  // namespace

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  if (handle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *handle = new cublasContext();
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetWorkspace(cublasHandle_t handle, void* workspace,
                                  size_t workspace_size_in_bytes) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (workspace == nullptr && workspace_size_in_bytes != 0) return CUBLAS_STATUS_INVALID_VALUE;
  if (reinterpret_cast<uintptr_t>(workspace) % 256 != 0) return CUBLAS_STATUS_INVALID_VALUE;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->math_mode = mode;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa,
                            cublasOperation_t transb, int m, int n, int k, const void* alpha,
                            const void* A, cudaDataType Atype, int lda, const void* B,
                            cudaDataType Btype, int ldb, const void* beta, void* C,
                            cudaDataType Ctype, int ldc, cublasComputeType_t computeType,
                            cublasGemmAlgo_t algo) {
  (void)algo;
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  const bool ta = IsTranspose(transa);
  const bool tb = IsTranspose(transb);
  if ((!ta && transa != CUBLAS_OP_N) || (!tb && transb != CUBLAS_OP_N)) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  if (m < 0 || n < 0 || k < 0) return CUBLAS_STATUS_INVALID_VALUE;
  // op(A) is m x k: A is stored m x k (N) or k x m (T), column-major.
  if (lda < MaxInt(1, ta ? k : m) || ldb < MaxInt(1, tb ? n : k) || ldc < MaxInt(1, m)) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  if (alpha == nullptr || beta == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  if (!SupportedTypes(Atype, Btype, Ctype, computeType)) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;

  const float a = *static_cast<const float*>(alpha);
  const float b = *static_cast<const float*>(beta);
  float* c = static_cast<float*>(C);
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t i = 0; i < m; ++i) {
      float acc = 0.0f;
      for (int64_t p = 0; p < k; ++p) {
        const int64_t ai = ta ? p + i * lda : i + p * lda;
        const int64_t bi = tb ? j + p * ldb : p + j * ldb;
        acc += Load(A, Atype, ai) * Load(B, Btype, bi);
      }
      float& out = c[i + j * ldc];
      out = b == 0.0f ? a * acc : a * acc + b * out;
    }
  }
  return CUBLAS_STATUS_SUCCESS;
}
