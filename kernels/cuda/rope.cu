// Rotate-half RoPE (see rope.h). One block per token; its threads stride
// over (head, i) pairs of the token's q heads then k heads, i < head_dim / 2,
// four consecutive i per thread (float4 loads of x, cos and sin) when
// head_dim % 8 == 0 and the pointers and strides are 16-byte aligned. A
// pair is read and written by one thread, so no barrier is needed.
#include "kernels/cuda/rope.h"

#include "kernels/cuda/cuda_compat.h"
#include "kernels/cuda/device_error.h"

namespace kestrel::cuda {
namespace {

constexpr int kWarpSize = 32;
constexpr int kMaxThreads = 256;

__device__ __forceinline__ void Rotate(float* x0, float* x1, float c, float s) {
  const float a = *x0, b = *x1;
  *x0 = a * c - b * s;
  *x1 = b * c + a * s;
}

template <bool kVec4>
__global__ void __launch_bounds__(kMaxThreads)
    RopeKernel(float* q, int64_t q_stride, int64_t num_q_heads, float* k, int64_t k_stride,
               int64_t num_kv_heads, const int32_t* __restrict__ positions, int64_t head_dim,
               const float* __restrict__ cos_table, const float* __restrict__ sin_table,
               int64_t max_positions, DeviceError* error) {
  const int64_t t = blockIdx.x;
  const int32_t pos = __ldg(positions + t);
  if (pos < 0 || pos >= max_positions) {
    if (threadIdx.x == 0)
      ReportDeviceError(error, DeviceErrorCode::kRowIndex, t, pos, max_positions);
    return;  // the whole block: the token is left alone
  }
  const int64_t half = head_dim / 2;
  const float* c = cos_table + static_cast<int64_t>(pos) * half;
  const float* s = sin_table + static_cast<int64_t>(pos) * half;
  // 32-bit index math (the launcher checks it fits): 64-bit division is slow.
  const int units = static_cast<int>(kVec4 ? half / 4 : half);  // per head
  const int total = static_cast<int>(num_q_heads + num_kv_heads) * units;
  for (int idx = threadIdx.x; idx < total; idx += blockDim.x) {
    const int head = idx / units, i = idx % units;
    float* x0 = head < num_q_heads ? q + t * q_stride + head * head_dim
                                   : k + t * k_stride + (head - num_q_heads) * head_dim;
    float* x1 = x0 + half;
    if constexpr (kVec4) {
      float4* p0 = reinterpret_cast<float4*>(x0) + i;
      float4* p1 = reinterpret_cast<float4*>(x1) + i;
      const float4 cc = __ldg(reinterpret_cast<const float4*>(c) + i);
      const float4 ss = __ldg(reinterpret_cast<const float4*>(s) + i);
      const float4 a = *p0, b = *p1;
      *p0 = make_float4(a.x * cc.x - b.x * ss.x, a.y * cc.y - b.y * ss.y, a.z * cc.z - b.z * ss.z,
                        a.w * cc.w - b.w * ss.w);
      *p1 = make_float4(b.x * cc.x + a.x * ss.x, b.y * cc.y + a.y * ss.y, b.z * cc.z + a.z * ss.z,
                        b.w * cc.w + a.w * ss.w);
    } else {
      Rotate(x0 + i, x1 + i, __ldg(c + i), __ldg(s + i));
    }
  }
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

cudaError_t ApplyRope(float* q, int64_t q_stride, int64_t num_q_heads, float* k, int64_t k_stride,
                      int64_t num_kv_heads, const int32_t* positions, int64_t num_tokens,
                      int64_t head_dim, const float* cos_table, const float* sin_table,
                      int64_t max_positions, DeviceError* error, cudaStream_t stream) {
  if (head_dim <= 0 || head_dim % 2 != 0 || num_tokens < 0 || num_tokens > 0x7fffffff ||
      num_q_heads < 0 || num_kv_heads < 0 || max_positions < 0 ||
      q_stride < num_q_heads * head_dim ||
      (num_kv_heads > 0 && k_stride < num_kv_heads * head_dim)) {
    return cudaErrorInvalidValue;
  }
  if ((num_q_heads + num_kv_heads) * head_dim > 0x7fffffff) return cudaErrorInvalidValue;
  if (num_tokens == 0) return cudaSuccess;
  if (positions == nullptr || cos_table == nullptr || sin_table == nullptr ||
      (num_q_heads > 0 && q == nullptr) || (num_kv_heads > 0 && k == nullptr)) {
    return cudaErrorInvalidValue;
  }
  const bool vec4 = head_dim % 8 == 0 && Aligned16(cos_table) && Aligned16(sin_table) &&
                    (num_q_heads == 0 || (Aligned16(q) && q_stride % 4 == 0)) &&
                    (num_kv_heads == 0 || (Aligned16(k) && k_stride % 4 == 0));
  const int64_t units = (num_q_heads + num_kv_heads) * (vec4 ? head_dim / 8 : head_dim / 2);
  const int64_t warps = (units + kWarpSize - 1) / kWarpSize;
  const dim3 grid(static_cast<unsigned>(num_tokens));
  const dim3 block(warps >= kMaxThreads / kWarpSize
                       ? kMaxThreads
                       : static_cast<int>(warps > 0 ? warps : 1) * kWarpSize);
  if (vec4) {
    return launch_kernel(RopeKernel<true>, grid, block, 0, stream, q, q_stride, num_q_heads, k,
                         k_stride, num_kv_heads, positions, head_dim, cos_table, sin_table,
                         max_positions, error);
  }
  return launch_kernel(RopeKernel<false>, grid, block, 0, stream, q, q_stride, num_q_heads, k,
                       k_stride, num_kv_heads, positions, head_dim, cos_table, sin_table,
                       max_positions, error);
}

}  // namespace kestrel::cuda
