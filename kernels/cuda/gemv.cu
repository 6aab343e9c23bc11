// The GEMV kernel and its launcher (see gemv.h for the design).
#include "kernels/cuda/gemv.h"

#include "kernels/cuda/cuda_compat.h"

namespace kestrel::cuda {
namespace {

using kernels::DType;

constexpr int kWarpSize = 32;
constexpr int kThreads = 256;
// Output columns (weight rows) per block: one per warp.
constexpr int kColumnsPerBlock = kThreads / kWarpSize;
// Columns of x staged in shared memory per pass: 8 rows take 32 KiB, under
// the 48 KiB of static shared memory a block may have. A multiple of 8, so
// every pass starts 16-byte aligned within a weight row.
constexpr int kChunk = 1024;

__device__ __forceinline__ float WarpSum(float value) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    value += __shfl_xor_sync(0xffffffffu, value, offset);
  }
  return value;
}

// IEEE binary16 bits -> F32, exactly (normals, subnormals, inf, NaN): the
// exponent and mantissa move into F32 position and a multiplication by
// 2^112 rebiases the exponent, which is exact for every finite value.
__device__ __forceinline__ float HalfBitsToFloat(unsigned bits) {
  const unsigned magnitude = (bits & 0x7fffu) << 13;
  float f = __uint_as_float(magnitude) * 5.192296858534828e33f;  // 2^112
  if ((bits & 0x7c00u) == 0x7c00u) f = __uint_as_float(0x7f800000u | magnitude);
  return __uint_as_float(__float_as_uint(f) | ((bits & 0x8000u) << 16));
}

// How one weight dtype is stored and widened. kPerVector elements make one
// 16-byte load.
template <DType kType>
struct WeightFormat;

template <>
struct WeightFormat<DType::kF32> {
  using Element = float;
  static constexpr int kPerVector = 4;
  __device__ __forceinline__ static void Widen(const uint4& v, float* out) {
    out[0] = __uint_as_float(v.x);
    out[1] = __uint_as_float(v.y);
    out[2] = __uint_as_float(v.z);
    out[3] = __uint_as_float(v.w);
  }
  __device__ __forceinline__ static float Load(const Element* p) { return __ldg(p); }
};

// bf16 is the top half of an F32: a shift widens it. Element 2i is the low
// half of 32-bit word i (little endian).
template <>
struct WeightFormat<DType::kBF16> {
  using Element = uint16_t;
  static constexpr int kPerVector = 8;
  __device__ __forceinline__ static void Widen(const uint4& v, float* out) {
    const unsigned words[4] = {v.x, v.y, v.z, v.w};
    for (int i = 0; i < 4; ++i) {
      out[2 * i] = __uint_as_float(words[i] << 16);
      out[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
    }
  }
  __device__ __forceinline__ static float Load(const Element* p) {
    return __uint_as_float(static_cast<unsigned>(__ldg(p)) << 16);
  }
};

template <>
struct WeightFormat<DType::kF16> {
  using Element = uint16_t;
  static constexpr int kPerVector = 8;
  __device__ __forceinline__ static void Widen(const uint4& v, float* out) {
    const unsigned words[4] = {v.x, v.y, v.z, v.w};
    for (int i = 0; i < 4; ++i) {
      out[2 * i] = HalfBitsToFloat(words[i] & 0xffffu);
      out[2 * i + 1] = HalfBitsToFloat(words[i] >> 16);
    }
  }
  __device__ __forceinline__ static float Load(const Element* p) {
    return HalfBitsToFloat(__ldg(p));
  }
};

__device__ __forceinline__ float Component(const float4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// Block b computes y[:, b*8 + warp] for all M rows. Every thread reaches
// every barrier (the chunk loop bounds are block-uniform); warps past n skip
// the arithmetic only. kVector: W and ldw allow 16-byte loads of each row.
// Launch bounds: two blocks per SM (at most 128 registers); with the default
// bound ptxas for sm_90 (CUDA 13) chose 32 registers for some variants and
// spilled.
template <int M, DType kType, bool kVector>
__global__ void __launch_bounds__(kThreads, 2)
    GemvKernel(const float* __restrict__ x, int64_t ldx,
               const typename WeightFormat<kType>::Element* __restrict__ w, int64_t ldw,
               const float* __restrict__ bias, float* __restrict__ y, int64_t ldy, int64_t n,
               int64_t k, bool accumulate) {
  using Format = WeightFormat<kType>;
  constexpr int kPerVector = Format::kPerVector;
  constexpr int kChunkVectors = kChunk / 4;  // float4s per staged row
  // x[r, c0 + c] lives at component c % 4 of xs[r * kChunkVectors + c / 4].
  __shared__ float4 xs[M * kChunkVectors];

  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  const int64_t column = static_cast<int64_t>(blockIdx.x) * kColumnsPerBlock + warp;
  const bool active = column < n;  // uniform within the warp
  const typename Format::Element* w_row = w + (active ? column : 0) * ldw;

  float acc[M];
  for (int r = 0; r < M; ++r) acc[r] = 0.0f;

  for (int64_t c0 = 0; c0 < k; c0 += kChunk) {
    const int len = k - c0 < kChunk ? static_cast<int>(k - c0) : kChunk;
    __syncthreads();  // every warp is done with the previous chunk
    for (int i = threadIdx.x; i < M * kChunkVectors; i += kThreads) {
      const int r = i / kChunkVectors;
      const int c = (i % kChunkVectors) * 4;
      const float* src = x + r * ldx + c0 + c;
      float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      if (c + 0 < len) v.x = src[0];
      if (c + 1 < len) v.y = src[1];
      if (c + 2 < len) v.z = src[2];
      if (c + 3 < len) v.w = src[3];
      xs[i] = v;
    }
    __syncthreads();
    if (!active) continue;

    int scalar_from = 0;  // first column of the chunk left to the scalar loop
    if constexpr (kVector) {
      const int vectors = len / kPerVector;
      const uint4* w_vectors = reinterpret_cast<const uint4*>(w_row + c0);
      for (int v = lane; v < vectors; v += kWarpSize) {
        float wf[kPerVector];
        Format::Widen(__ldg(w_vectors + v), wf);
        for (int r = 0; r < M; ++r) {
          for (int q = 0; q < kPerVector / 4; ++q) {
            const float4 xv = xs[r * kChunkVectors + v * (kPerVector / 4) + q];
            acc[r] += xv.x * wf[4 * q] + xv.y * wf[4 * q + 1] + xv.z * wf[4 * q + 2] +
                      xv.w * wf[4 * q + 3];
          }
        }
      }
      scalar_from = vectors * kPerVector;
    }
    for (int c = scalar_from + lane; c < len; c += kWarpSize) {
      const float wv = Format::Load(w_row + c0 + c);
      for (int r = 0; r < M; ++r) acc[r] += Component(xs[r * kChunkVectors + c / 4], c % 4) * wv;
    }
  }

  if (!active) return;  // after the last barrier: whole warps leave together
  const float b = bias != nullptr ? bias[column] : 0.0f;
  for (int r = 0; r < M; ++r) {
    const float sum = WarpSum(acc[r]) + b;
    if (lane == r) {
      float* out = y + r * ldy + column;
      *out = accumulate ? *out + sum : sum;
    }
  }
}

struct GemvArgs {
  const float* x;
  int64_t ldx;
  const void* w;
  int64_t ldw;
  const float* bias;
  float* y;
  int64_t ldy;
  int64_t n;
  int64_t k;
  bool accumulate;
};

template <int M, DType kType, bool kVector>
cudaError_t Launch(const GemvArgs& a, cudaStream_t stream) {
  using Element = typename WeightFormat<kType>::Element;
  const dim3 grid(static_cast<unsigned>((a.n + kColumnsPerBlock - 1) / kColumnsPerBlock));
  return launch_kernel(GemvKernel<M, kType, kVector>, grid, dim3(kThreads), 0, stream, a.x,
                       a.ldx, static_cast<const Element*>(a.w), a.ldw, a.bias, a.y, a.ldy, a.n,
                       a.k, a.accumulate);
}

template <int M, DType kType>
cudaError_t LaunchForType(const GemvArgs& a, cudaStream_t stream) {
  // 16-byte loads need every row start 16-byte aligned.
  using Element = typename WeightFormat<kType>::Element;
  const int64_t row_bytes = a.ldw * static_cast<int64_t>(sizeof(Element));
  const bool vector = reinterpret_cast<uintptr_t>(a.w) % 16 == 0 && row_bytes % 16 == 0;
  return vector ? Launch<M, kType, true>(a, stream) : Launch<M, kType, false>(a, stream);
}

// Instantiations: M = 1..8 x {F32, F16, BF16} x {vector, scalar} loads.
template <int M>
cudaError_t LaunchForRows(DType w_dtype, const GemvArgs& a, cudaStream_t stream) {
  switch (w_dtype) {
    case DType::kF32: return LaunchForType<M, DType::kF32>(a, stream);
    case DType::kF16: return LaunchForType<M, DType::kF16>(a, stream);
    case DType::kBF16: return LaunchForType<M, DType::kBF16>(a, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace

cudaError_t Gemv(const float* x, int64_t ldx, const void* w, DType w_dtype, int64_t ldw,
                 const float* bias, float* y, int64_t ldy, int64_t m, int64_t n, int64_t k,
                 bool accumulate, cudaStream_t stream) {
  if (m < 0 || m > kGemvMaxRows || n < 0 || k < 0 || ldx < k || ldw < k || ldy < n) {
    return cudaErrorInvalidValue;
  }
  if (w_dtype != DType::kF32 && w_dtype != DType::kF16 && w_dtype != DType::kBF16) {
    return cudaErrorInvalidValue;
  }
  if (m == 0 || n == 0) return cudaSuccess;
  if (y == nullptr || (k > 0 && (x == nullptr || w == nullptr))) return cudaErrorInvalidValue;
  // The grid has one block per 8 columns.
  if ((n + kColumnsPerBlock - 1) / kColumnsPerBlock > 0x7fffffff) return cudaErrorInvalidValue;

  const GemvArgs a{x, ldx, w, ldw, bias, y, ldy, n, k, accumulate};
  switch (m) {
    case 1: return LaunchForRows<1>(w_dtype, a, stream);
    case 2: return LaunchForRows<2>(w_dtype, a, stream);
    case 3: return LaunchForRows<3>(w_dtype, a, stream);
    case 4: return LaunchForRows<4>(w_dtype, a, stream);
    case 5: return LaunchForRows<5>(w_dtype, a, stream);
    case 6: return LaunchForRows<6>(w_dtype, a, stream);
    case 7: return LaunchForRows<7>(w_dtype, a, stream);
    case 8: return LaunchForRows<8>(w_dtype, a, stream);
    default: return cudaErrorInvalidValue;  // excluded by the check above
  }
}

}  // namespace kestrel::cuda
