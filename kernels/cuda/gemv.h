// GEMV / skinny GEMM for decode batches on the GPU: y[M,N] = x[M,K] · W[N,K]ᵀ
// (+bias) (+y) for M <= kGemvMaxRows, W in F32, F16 or BF16. Decode steps are
// bound by reading W once from HBM, so the kernel streams each weight row
// with 16-byte loads and reuses every loaded element for all M rows of x:
//   - one warp per output column n (= weight row n), 8 warps per block;
//   - x is staged in shared memory, 1024 columns of all M rows at a
//     time, and shared by the block's 8 warps;
//   - the weights are widened exactly to F32 (no rounding of x, unlike the
//     cuBLAS path, which rounds x to the weight dtype), F32 accumulation,
//     one warp-shuffle reduction per row at the end;
//   - rows that are not 16-byte aligned (odd ldw, offset pointers) take a
//     scalar-load variant; K need not be a multiple of 8.
// M is a template parameter (1..8), so the M accumulators stay in registers.
#ifndef KESTREL_KERNELS_CUDA_GEMV_H_
#define KESTREL_KERNELS_CUDA_GEMV_H_

#include <cstdint>

#include "kernels/cuda/cuda_compat.h"
#include "kernels/dtype.h"

namespace kestrel::cuda {

// The largest M the GEMV kernel handles, and the default at or below which
// CublasGemm::Gemm (gemm.h) uses it instead of cuBLAS. 8 covers decode
// batches of 1-8; it is a guess until measured on a GPU (at M = 8 the kernel
// does 8 FMAs per weight element and may stop being bandwidth bound).
inline constexpr int64_t kGemvMaxRows = 8;

// y = x · Wᵀ (+ bias) (+ y if accumulate), as kernels::GemmParams:
//   x:    [m, k] F32, row stride ldx >= k
//   w:    [n, k] in w_dtype (kF32, kF16 or kBF16), row stride ldw >= k
//   bias: [n] F32 or nullptr
//   y:    [m, n] F32, row stride ldy >= n; must not overlap x or w
// Device pointers. Returns cudaErrorInvalidValue for m outside
// [0, kGemvMaxRows], negative n or k, short strides, another w_dtype, or a
// null pointer that would be read (y when m, n > 0; x and w when k > 0).
// m == 0 or n == 0 launches nothing; k == 0 gives y = bias (or y + bias).
cudaError_t Gemv(const float* x, int64_t ldx, const void* w, kernels::DType w_dtype, int64_t ldw,
                 const float* bias, float* y, int64_t ldy, int64_t m, int64_t n, int64_t k,
                 bool accumulate, cudaStream_t stream);

}  // namespace kestrel::cuda

#endif  // KESTREL_KERNELS_CUDA_GEMV_H_
