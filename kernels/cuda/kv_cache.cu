// KV-cache write (see kv_cache.h). One block per token; thread e of the
// token's num_kv_heads * head_dim elements reads k and v coalesced, writes
// V coalesced (a head's row is contiguous) and K with a stride of
// block_size elements (the transposed layout). The K stores are therefore
// scattered; the write is small next to the attention that reads the
// cache, and a tiled transpose through shared memory (several tokens of a
// block per thread block) is the way to coalesce them if it ever matters.
#include "kernels/cuda/kv_cache.h"

#include "kernels/cuda/cuda_compat.h"
#include "kernels/cuda/device_error.h"

namespace kestrel::cuda {
namespace {

constexpr int kWarpSize = 32;
constexpr int kMaxThreads = 256;

__device__ __forceinline__ void Store(float* dst, float x) { *dst = x; }
__device__ __forceinline__ void Store(__nv_bfloat16* dst, float x) { *dst = __float2bfloat16(x); }

template <typename T>
__global__ void __launch_bounds__(kMaxThreads)
    WriteKvCacheKernel(const float* __restrict__ k, int64_t k_stride, const float* __restrict__ v,
                       int64_t v_stride, const int32_t* __restrict__ slot_mapping, int num_kv_heads,
                       int head_dim, T* __restrict__ k_cache, T* __restrict__ v_cache,
                       int64_t num_slots, int64_t block_size, DeviceError* error) {
  const int64_t t = blockIdx.x;
  const int32_t slot = __ldg(slot_mapping + t);
  if (slot == -1) return;  // padding
  if (slot < -1 || slot >= num_slots) {
    if (threadIdx.x == 0) ReportDeviceError(error, DeviceErrorCode::kKvSlot, t, slot, num_slots);
    return;
  }
  const int64_t block = slot / block_size, offset = slot % block_size;
  const float* k_row = k + t * k_stride;
  const float* v_row = v + t * v_stride;
  const int elems = num_kv_heads * head_dim;
  for (int e = threadIdx.x; e < elems; e += blockDim.x) {
    const int g = e / head_dim, i = e % head_dim;
    // Start of the (block, head) tile, [head_dim, block_size] for K and
    // [block_size, head_dim] for V.
    const int64_t tile = (block * num_kv_heads + g) * head_dim * block_size;
    Store(k_cache + tile + i * block_size + offset, __ldg(k_row + e));
    Store(v_cache + tile + offset * head_dim + i, __ldg(v_row + e));
  }
}

}  // namespace

cudaError_t WriteKvCache(const float* k, int64_t k_stride, const float* v, int64_t v_stride,
                         const int32_t* slot_mapping, int64_t num_tokens, int64_t num_kv_heads,
                         int64_t head_dim, void* k_cache, void* v_cache, int64_t num_blocks,
                         int64_t block_size, kernels::DType cache_dtype, DeviceError* error,
                         cudaStream_t stream) {
  if (num_tokens < 0 || num_tokens > 0x7fffffff || num_kv_heads <= 0 || head_dim <= 0 ||
      num_blocks < 0 || block_size <= 0 || num_kv_heads * head_dim > 0x7fffffff) {
    return cudaErrorInvalidValue;
  }
  if (cache_dtype != kernels::DType::kF32 && cache_dtype != kernels::DType::kBF16) {
    return cudaErrorInvalidValue;
  }
  const int64_t row = num_kv_heads * head_dim;
  if (k_stride < row || v_stride < row) return cudaErrorInvalidValue;
  if (num_tokens == 0) return cudaSuccess;
  if (k == nullptr || v == nullptr || slot_mapping == nullptr || k_cache == nullptr ||
      v_cache == nullptr) {
    return cudaErrorInvalidValue;
  }
  const int64_t warps = (row + kWarpSize - 1) / kWarpSize;
  const dim3 grid(static_cast<unsigned>(num_tokens));
  const dim3 block(warps >= kMaxThreads / kWarpSize ? kMaxThreads
                                                    : static_cast<int>(warps) * kWarpSize);
  const int64_t num_slots = num_blocks * block_size;
  const int heads = static_cast<int>(num_kv_heads), dim = static_cast<int>(head_dim);
  if (cache_dtype == kernels::DType::kBF16) {
    return launch_kernel(WriteKvCacheKernel<__nv_bfloat16>, grid, block, 0, stream, k, k_stride, v,
                         v_stride, slot_mapping, heads, dim, static_cast<__nv_bfloat16*>(k_cache),
                         static_cast<__nv_bfloat16*>(v_cache), num_slots, block_size, error);
  }
  return launch_kernel(WriteKvCacheKernel<float>, grid, block, 0, stream, k, k_stride, v, v_stride,
                       slot_mapping, heads, dim, static_cast<float*>(k_cache),
                       static_cast<float*>(v_cache), num_slots, block_size, error);
}

}  // namespace kestrel::cuda
