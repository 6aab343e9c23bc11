// The slice of cuBLAS that kernels/cuda/gemm.cc calls, for the emulated CUDA
// build (kernels/cuda/emulation), where "device" memory is host memory and
// launches are synchronous. Found as <cublas_v2.h> only by targets built
// against the emulation; the nvcc build gets NVIDIA's header of that name.
//
// Types, enumerator values and signatures are those of cuBLAS 13, so gemm.cc
// compiles unchanged against either. cublasGemmEx runs a plain loop with F32
// accumulation (no tiling, no threads): it is a reference, not a fast GEMM.
// Arguments are validated as cuBLAS documents it (CUBLAS_STATUS_INVALID_VALUE
// for negative sizes or short leading dimensions, CUBLAS_STATUS_NOT_SUPPORTED
// for type combinations outside the list below). Pointer mode is always host
// (alpha and beta are read on the host).
#ifndef KESTREL_KERNELS_CUDA_CUBLAS_EMULATION_CUBLAS_V2_H_
#define KESTREL_KERNELS_CUDA_CUBLAS_EMULATION_CUBLAS_V2_H_

#include <cstddef>

#include "kernels/cuda/cuda_compat.h"

// library_types.h: the element types cuBLAS reads (the ones the shim knows).
typedef enum cudaDataType_t {
  CUDA_R_16F = 2,
  CUDA_R_16BF = 14,
  CUDA_R_32F = 0,
} cudaDataType;

typedef enum {
  CUBLAS_STATUS_SUCCESS = 0,
  CUBLAS_STATUS_NOT_INITIALIZED = 1,
  CUBLAS_STATUS_ALLOC_FAILED = 3,
  CUBLAS_STATUS_INVALID_VALUE = 7,
  CUBLAS_STATUS_ARCH_MISMATCH = 8,
  CUBLAS_STATUS_MAPPING_ERROR = 11,
  CUBLAS_STATUS_EXECUTION_FAILED = 13,
  CUBLAS_STATUS_INTERNAL_ERROR = 14,
  CUBLAS_STATUS_NOT_SUPPORTED = 15,
  CUBLAS_STATUS_LICENSE_ERROR = 16
} cublasStatus_t;

typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_OP_C = 2 } cublasOperation_t;

typedef enum {
  CUBLAS_DEFAULT_MATH = 0,
  CUBLAS_TENSOR_OP_MATH = 1,
  CUBLAS_PEDANTIC_MATH = 2,
  CUBLAS_TF32_TENSOR_OP_MATH = 3,
  CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION = 16,
} cublasMath_t;

typedef enum {
  CUBLAS_COMPUTE_32F = 68,
  CUBLAS_COMPUTE_32F_PEDANTIC = 69,
  CUBLAS_COMPUTE_32F_FAST_TF32 = 77,
} cublasComputeType_t;

typedef enum { CUBLAS_GEMM_DEFAULT = -1 } cublasGemmAlgo_t;

struct cublasContext;
typedef struct cublasContext* cublasHandle_t;

// CUBLAS_STATUS_INVALID_VALUE if `handle` is null.
cublasStatus_t cublasCreate(cublasHandle_t* handle);
// CUBLAS_STATUS_NOT_INITIALIZED if `handle` is null.
cublasStatus_t cublasDestroy(cublasHandle_t handle);
// Recorded; the emulation has one in-order stream.
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream);
// CUBLAS_STATUS_INVALID_VALUE if `workspace` is not 256-byte aligned, or is
// null with a non-zero size. The shim needs no workspace.
cublasStatus_t cublasSetWorkspace(cublasHandle_t handle, void* workspace,
                                  size_t workspace_size_in_bytes);
// Recorded; every mode computes the same F32 loop here.
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode);

// C[m,n] = alpha * op(A)[m,k] · op(B)[k,n] + beta * C, column-major. C is
// not read when *beta == 0 (it may hold NaN). Supported, with C in
// CUDA_R_32F: A and B both CUDA_R_32F (compute CUBLAS_COMPUTE_32F,
// CUBLAS_COMPUTE_32F_PEDANTIC or CUBLAS_COMPUTE_32F_FAST_TF32, all computed
// in F32 here) or both CUDA_R_16F or both CUDA_R_16BF (compute
// CUBLAS_COMPUTE_32F). transa/transb: CUBLAS_OP_N or CUBLAS_OP_T (CUBLAS_OP_C
// is CUBLAS_OP_T for real types). `algo` is ignored.
cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa,
                            cublasOperation_t transb, int m, int n, int k, const void* alpha,
                            const void* A, cudaDataType Atype, int lda, const void* B,
                            cudaDataType Btype, int ldb, const void* beta, void* C,
                            cudaDataType Ctype, int ldc, cublasComputeType_t computeType,
                            cublasGemmAlgo_t algo);

#endif  // KESTREL_KERNELS_CUDA_CUBLAS_EMULATION_CUBLAS_V2_H_
