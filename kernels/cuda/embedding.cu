// Embedding gather (see embedding.h). One block of 256 threads per token
// walks its row; rows of a token are independent, so there is no barrier.
// F32 rows move as float4, BF16 rows as 8 values per 16-byte load (a BF16
// is the top half of an F32, so the conversion is a shift), when the row
// length, the pointers and the output stride allow; otherwise (and for F16)
// element by element, which is still coalesced across the warp.
#include "kernels/cuda/embedding.h"

#include "kernels/cuda/cuda_compat.h"
#include "kernels/cuda/device_error.h"

namespace kestrel::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float ToF32(float x) { return x; }
__device__ __forceinline__ float ToF32(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float ToF32(__half x) { return __half2float(x); }

// The table row of token blockIdx.x, or null after reporting a bad id. Every
// thread of the block gets the same answer, so the whole block returns.
template <typename T>
__device__ __forceinline__ const T* TableRow(const T* table, int64_t vocab_size, int64_t dim,
                                             const int32_t* ids, DeviceError* error) {
  const int64_t t = blockIdx.x;
  const int32_t id = __ldg(ids + t);
  if (id < 0 || id >= vocab_size) {
    if (threadIdx.x == 0) ReportDeviceError(error, DeviceErrorCode::kTokenId, t, id, vocab_size);
    return nullptr;
  }
  return table + static_cast<int64_t>(id) * dim;
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    GatherScalarKernel(const T* __restrict__ table, int64_t vocab_size, int64_t dim,
                       const int32_t* __restrict__ ids, float* __restrict__ out, int64_t out_stride,
                       DeviceError* error) {
  const T* row = TableRow(table, vocab_size, dim, ids, error);
  if (row == nullptr) return;
  float* dst = out + static_cast<int64_t>(blockIdx.x) * out_stride;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) dst[i] = ToF32(row[i]);
}

// REQUIRES: dim % 4 == 0; table, out 16-byte aligned; out_stride % 4 == 0.
__global__ void __launch_bounds__(kThreads)
    GatherF32x4Kernel(const float* __restrict__ table, int64_t vocab_size, int64_t dim,
                      const int32_t* __restrict__ ids, float* __restrict__ out, int64_t out_stride,
                      DeviceError* error) {
  const float* row = TableRow(table, vocab_size, dim, ids, error);
  if (row == nullptr) return;
  const float4* src = reinterpret_cast<const float4*>(row);
  float4* dst = reinterpret_cast<float4*>(out + static_cast<int64_t>(blockIdx.x) * out_stride);
  for (int64_t i = threadIdx.x; i < dim / 4; i += blockDim.x) dst[i] = __ldg(src + i);
}

// REQUIRES: dim % 8 == 0; table, out 16-byte aligned; out_stride % 4 == 0.
__global__ void __launch_bounds__(kThreads)
    GatherBf16x8Kernel(const __nv_bfloat16* __restrict__ table, int64_t vocab_size, int64_t dim,
                       const int32_t* __restrict__ ids, float* __restrict__ out, int64_t out_stride,
                       DeviceError* error) {
  const __nv_bfloat16* row = TableRow(table, vocab_size, dim, ids, error);
  if (row == nullptr) return;
  const uint4* src = reinterpret_cast<const uint4*>(row);
  float4* dst = reinterpret_cast<float4*>(out + static_cast<int64_t>(blockIdx.x) * out_stride);
  for (int64_t i = threadIdx.x; i < dim / 8; i += blockDim.x) {
    const uint4 w = __ldg(src + i);
    // Little endian: the lower half of each word is the earlier element.
    dst[2 * i] = make_float4(__uint_as_float(w.x << 16), __uint_as_float(w.x & 0xffff0000u),
                             __uint_as_float(w.y << 16), __uint_as_float(w.y & 0xffff0000u));
    dst[2 * i + 1] = make_float4(__uint_as_float(w.z << 16), __uint_as_float(w.z & 0xffff0000u),
                                 __uint_as_float(w.w << 16), __uint_as_float(w.w & 0xffff0000u));
  }
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

cudaError_t EmbeddingGather(const void* table, kernels::DType table_dtype, int64_t vocab_size,
                            int64_t dim, const int32_t* ids, int64_t num_tokens, float* out,
                            int64_t out_stride, DeviceError* error, cudaStream_t stream) {
  if (vocab_size < 0 || dim < 0 || num_tokens < 0 || out_stride < dim || num_tokens > 0x7fffffff) {
    return cudaErrorInvalidValue;
  }
  if (table_dtype != kernels::DType::kF32 && table_dtype != kernels::DType::kF16 &&
      table_dtype != kernels::DType::kBF16) {
    return cudaErrorInvalidValue;
  }
  if (num_tokens == 0) return cudaSuccess;
  if (table == nullptr || ids == nullptr || out == nullptr) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(num_tokens));
  const dim3 block(kThreads);
  const bool out_vec = Aligned16(out) && out_stride % 4 == 0;
  switch (table_dtype) {
    case kernels::DType::kF32: {
      const float* t = static_cast<const float*>(table);
      if (out_vec && dim % 4 == 0 && Aligned16(table)) {
        return launch_kernel(GatherF32x4Kernel, grid, block, 0, stream, t, vocab_size, dim, ids,
                             out, out_stride, error);
      }
      return launch_kernel(GatherScalarKernel<float>, grid, block, 0, stream, t, vocab_size, dim,
                           ids, out, out_stride, error);
    }
    case kernels::DType::kBF16: {
      const __nv_bfloat16* t = static_cast<const __nv_bfloat16*>(table);
      if (out_vec && dim % 8 == 0 && Aligned16(table)) {
        return launch_kernel(GatherBf16x8Kernel, grid, block, 0, stream, t, vocab_size, dim, ids,
                             out, out_stride, error);
      }
      return launch_kernel(GatherScalarKernel<__nv_bfloat16>, grid, block, 0, stream, t, vocab_size,
                           dim, ids, out, out_stride, error);
    }
    case kernels::DType::kF16:
      return launch_kernel(GatherScalarKernel<__half>, grid, block, 0, stream,
                           static_cast<const __half*>(table), vocab_size, dim, ids, out, out_stride,
                           error);
    default:
      return cudaErrorInvalidValue;  // rejected above
  }
}

}  // namespace kestrel::cuda
