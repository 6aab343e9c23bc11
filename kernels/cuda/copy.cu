// Row gather, block copy, casts and bias add (see copy.h).
//
// GatherRows: one block per output row, float4 when aligned.
// CopyBlocks: grid (pair, array); a block copies one KV block of one array
//   in the widest unit (16, 4 or 1 bytes) that base, array_stride and
//   block_bytes are all multiples of; arrays beyond the grid's y limit are
//   strided over.
// Casts and AddBias: a 2-D grid, x tiling a row in chunks of 256 threads,
//   y walking rows. The 16-bit sides move element by element (coalesced
//   across the warp, converted with the CUDA intrinsics); AddBias uses float4
//   when aligned.
#include "kernels/cuda/copy.h"

#include "kernels/cuda/cuda_compat.h"
#include "kernels/cuda/device_error.h"

namespace kestrel::cuda {
namespace {

constexpr int kWarpSize = 32;
constexpr int kThreads = 256;
constexpr int64_t kMaxGridY = 65535;

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// A multiple of the warp size covering `units`, at most kThreads.
int ThreadsFor(int64_t units) {
  const int64_t warps = (units + kWarpSize - 1) / kWarpSize;
  if (warps >= kThreads / kWarpSize) return kThreads;
  return static_cast<int>(warps > 0 ? warps : 1) * kWarpSize;
}

// 2-D grid for `units` elements per row over `rows` rows.
dim3 RowGrid(int64_t units, int64_t rows) {
  const int64_t chunks = (units + kThreads - 1) / kThreads;
  return dim3(static_cast<unsigned>(chunks),
              static_cast<unsigned>(rows < kMaxGridY ? rows : kMaxGridY));
}

// ---- GatherRows ----

template <bool kVec4>
__global__ void __launch_bounds__(kThreads)
    GatherRowsKernel(const float* __restrict__ src, int64_t src_stride, int64_t src_rows,
                     const int32_t* __restrict__ rows, int64_t dim, float* __restrict__ dst,
                     int64_t dst_stride, DeviceError* error) {
  const int64_t r = blockIdx.x;
  const int32_t row = __ldg(rows + r);
  if (row < 0 || row >= src_rows) {
    if (threadIdx.x == 0) ReportDeviceError(error, DeviceErrorCode::kRowIndex, r, row, src_rows);
    return;
  }
  const float* s = src + static_cast<int64_t>(row) * src_stride;
  float* d = dst + r * dst_stride;
  if constexpr (kVec4) {
    for (int64_t i = threadIdx.x; i < dim / 4; i += blockDim.x) {
      reinterpret_cast<float4*>(d)[i] = __ldg(reinterpret_cast<const float4*>(s) + i);
    }
  } else {
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) d[i] = __ldg(s + i);
  }
}

// ---- CopyBlocks ----

// Unit: uint4, unsigned or unsigned char; base, array_stride and block_bytes
// are multiples of sizeof(Unit).
template <typename Unit>
__global__ void __launch_bounds__(kThreads)
    CopyBlocksKernel(char* base, int64_t num_arrays, int64_t array_stride, int64_t block_bytes,
                     int64_t num_blocks, const int32_t* __restrict__ pairs, DeviceError* error) {
  const int64_t p = blockIdx.x;
  const int32_t src = __ldg(pairs + 2 * p), dst = __ldg(pairs + 2 * p + 1);
  const bool src_ok = src >= 0 && src < num_blocks, dst_ok = dst >= 0 && dst < num_blocks;
  if (!src_ok || !dst_ok) {
    if (blockIdx.y == 0 && threadIdx.x == 0) {
      ReportDeviceError(error, DeviceErrorCode::kBlockId, p, src_ok ? dst : src, num_blocks);
    }
    return;
  }
  if (src == dst) return;
  const int64_t units = block_bytes / static_cast<int64_t>(sizeof(Unit));
  for (int64_t a = blockIdx.y; a < num_arrays; a += gridDim.y) {
    char* array = base + a * array_stride;
    const Unit* from = reinterpret_cast<const Unit*>(array + src * block_bytes);
    Unit* to = reinterpret_cast<Unit*>(array + dst * block_bytes);
    for (int64_t i = threadIdx.x; i < units; i += blockDim.x) to[i] = from[i];
  }
}

// ---- Casts and AddBias ----

__device__ __forceinline__ void Convert(float x, __nv_bfloat16* out) { *out = __float2bfloat16(x); }
__device__ __forceinline__ void Convert(float x, __half* out) { *out = __float2half(x); }
__device__ __forceinline__ void Convert(__nv_bfloat16 x, float* out) { *out = __bfloat162float(x); }

template <typename Src, typename Dst>
__global__ void __launch_bounds__(kThreads)
    CastKernel(const Src* __restrict__ src, int64_t src_stride, Dst* __restrict__ dst,
               int64_t dst_stride, int64_t rows, int64_t dim) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= dim) return;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    Convert(src[r * src_stride + i], dst + r * dst_stride + i);
  }
}

template <bool kVec4>
__global__ void __launch_bounds__(kThreads)
    AddBiasKernel(float* __restrict__ y, int64_t y_stride, const float* __restrict__ bias,
                  int64_t rows, int64_t dim) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= (kVec4 ? dim / 4 : dim)) return;
  if constexpr (kVec4) {
    const float4 b = __ldg(reinterpret_cast<const float4*>(bias) + i);
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
      float4* p = reinterpret_cast<float4*>(y + r * y_stride) + i;
      const float4 v = *p;
      *p = make_float4(v.x + b.x, v.y + b.y, v.z + b.z, v.w + b.w);
    }
  } else {
    const float b = __ldg(bias + i);
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) y[r * y_stride + i] += b;
  }
}

bool BadRows(int64_t rows, int64_t dim, int64_t stride_a, int64_t stride_b) {
  return rows < 0 || dim < 0 || stride_a < dim || stride_b < dim ||
         (dim + kThreads - 1) / kThreads > 0x7fffffff;
}

template <typename Src, typename Dst>
cudaError_t LaunchCast(const Src* src, int64_t src_stride, Dst* dst, int64_t dst_stride,
                       int64_t rows, int64_t dim, cudaStream_t stream) {
  if (BadRows(rows, dim, src_stride, dst_stride)) return cudaErrorInvalidValue;
  if (rows == 0 || dim == 0) return cudaSuccess;
  if (src == nullptr || dst == nullptr) return cudaErrorInvalidValue;
  return launch_kernel(CastKernel<Src, Dst>, RowGrid(dim, rows), dim3(kThreads), 0, stream, src,
                       src_stride, dst, dst_stride, rows, dim);
}

}  // namespace

cudaError_t GatherRows(const float* src, int64_t src_stride, int64_t src_rows, const int32_t* rows,
                       int64_t num_rows, int64_t dim, float* dst, int64_t dst_stride,
                       DeviceError* error, cudaStream_t stream) {
  if (src_rows < 0 || num_rows < 0 || num_rows > 0x7fffffff || dim < 0 || src_stride < dim ||
      dst_stride < dim) {
    return cudaErrorInvalidValue;
  }
  if (num_rows == 0) return cudaSuccess;
  if (rows == nullptr || dst == nullptr || (src == nullptr && src_rows > 0)) {
    return cudaErrorInvalidValue;
  }
  const bool vec4 = dim % 4 == 0 && src_stride % 4 == 0 && dst_stride % 4 == 0 && Aligned16(src) &&
                    Aligned16(dst);
  const dim3 grid(static_cast<unsigned>(num_rows));
  const dim3 block(ThreadsFor(vec4 ? dim / 4 : dim));
  if (vec4) {
    return launch_kernel(GatherRowsKernel<true>, grid, block, 0, stream, src, src_stride, src_rows,
                         rows, dim, dst, dst_stride, error);
  }
  return launch_kernel(GatherRowsKernel<false>, grid, block, 0, stream, src, src_stride, src_rows,
                       rows, dim, dst, dst_stride, error);
}

cudaError_t CopyBlocks(void* base, int64_t num_arrays, int64_t array_stride, int64_t block_bytes,
                       int64_t num_blocks, const int32_t* pairs, int64_t num_pairs,
                       DeviceError* error, cudaStream_t stream) {
  if (num_arrays < 0 || block_bytes < 0 || num_blocks < 0 || num_pairs < 0 ||
      num_pairs > 0x7fffffff || array_stride < num_blocks * block_bytes) {
    return cudaErrorInvalidValue;
  }
  if (num_pairs == 0) return cudaSuccess;
  if (pairs == nullptr || (base == nullptr && num_arrays > 0 && block_bytes > 0)) {
    return cudaErrorInvalidValue;
  }
  // Every pair is launched even with nothing to copy, so bad ids are still
  // reported.
  const dim3 grid(static_cast<unsigned>(num_pairs),
                  static_cast<unsigned>(num_arrays < 1           ? 1
                                        : num_arrays < kMaxGridY ? num_arrays
                                                                 : kMaxGridY));
  const dim3 block(kThreads);
  char* bytes = static_cast<char*>(base);
  const uintptr_t all = reinterpret_cast<uintptr_t>(base) | static_cast<uintptr_t>(array_stride) |
                        static_cast<uintptr_t>(block_bytes);
  if (all % 16 == 0) {
    return launch_kernel(CopyBlocksKernel<uint4>, grid, block, 0, stream, bytes, num_arrays,
                         array_stride, block_bytes, num_blocks, pairs, error);
  }
  if (all % 4 == 0) {
    return launch_kernel(CopyBlocksKernel<unsigned>, grid, block, 0, stream, bytes, num_arrays,
                         array_stride, block_bytes, num_blocks, pairs, error);
  }
  return launch_kernel(CopyBlocksKernel<unsigned char>, grid, block, 0, stream, bytes, num_arrays,
                       array_stride, block_bytes, num_blocks, pairs, error);
}

cudaError_t CastF32ToBf16(const float* src, int64_t src_stride, uint16_t* dst, int64_t dst_stride,
                          int64_t rows, int64_t dim, cudaStream_t stream) {
  return LaunchCast(src, src_stride, reinterpret_cast<__nv_bfloat16*>(dst), dst_stride, rows, dim,
                    stream);
}

cudaError_t CastF32ToF16(const float* src, int64_t src_stride, uint16_t* dst, int64_t dst_stride,
                         int64_t rows, int64_t dim, cudaStream_t stream) {
  return LaunchCast(src, src_stride, reinterpret_cast<__half*>(dst), dst_stride, rows, dim, stream);
}

cudaError_t CastBf16ToF32(const uint16_t* src, int64_t src_stride, float* dst, int64_t dst_stride,
                          int64_t rows, int64_t dim, cudaStream_t stream) {
  return LaunchCast(reinterpret_cast<const __nv_bfloat16*>(src), src_stride, dst, dst_stride, rows,
                    dim, stream);
}

cudaError_t AddBias(float* y, int64_t y_stride, const float* bias, int64_t rows, int64_t dim,
                    cudaStream_t stream) {
  if (BadRows(rows, dim, y_stride, y_stride)) return cudaErrorInvalidValue;
  if (rows == 0 || dim == 0) return cudaSuccess;
  if (y == nullptr || bias == nullptr) return cudaErrorInvalidValue;
  const bool vec4 = dim % 4 == 0 && y_stride % 4 == 0 && Aligned16(y) && Aligned16(bias);
  if (vec4) {
    return launch_kernel(AddBiasKernel<true>, RowGrid(dim / 4, rows), dim3(kThreads), 0, stream, y,
                         y_stride, bias, rows, dim);
  }
  return launch_kernel(AddBiasKernel<false>, RowGrid(dim, rows), dim3(kThreads), 0, stream, y,
                       y_stride, bias, rows, dim);
}

}  // namespace kestrel::cuda
