// Data movement on the GPU: gathering rows (Ops::GatherRows), copy-on-write
// of KV blocks (Ops::CopyBlocks), dtype casts over strided rows, and adding
// a bias to every row. Ids and row indices are read from device memory, so
// a bad one is skipped (never read or written out of bounds) and reported
// through DeviceError (device_error.h). 16-bit floats travel as their bits
// (uint16_t), as in kernels/dtype.h.
#ifndef KESTREL_KERNELS_CUDA_COPY_H_
#define KESTREL_KERNELS_CUDA_COPY_H_

#include <cstdint>

#include "kernels/cuda/cuda_compat.h"

namespace kestrel::cuda {

// kernels/cuda/device_error.h; declared here because that header defines
// device code, which a host-only compiler (the CUDA backend) cannot parse.
struct DeviceError;

// dst[r, :] = src[rows[r], :] for r in [0, num_rows).
// src: [src_rows, dim], row stride src_stride.
// rows: [num_rows] in device memory; an index outside [0, src_rows) leaves
//   dst[r, :] untouched and is reported as DeviceErrorCode::kRowIndex (index
//   r, value the row, limit src_rows) unless `error` is null.
// dst: [num_rows, dim], row stride dst_stride, not overlapping src.
// Device pointers. Returns cudaErrorInvalidValue for negative sizes, a
// stride < dim, or a null pointer when num_rows > 0; otherwise the launch
// error (num_rows == 0 launches nothing).
cudaError_t GatherRows(const float* src, int64_t src_stride, int64_t src_rows, const int32_t* rows,
                       int64_t num_rows, int64_t dim, float* dst, int64_t dst_stride,
                       DeviceError* error, cudaStream_t stream);

// For each pair (src, dst) of `pairs` ([num_pairs, 2], device memory), block
// dst becomes a copy of block src in every one of the `num_arrays` arrays
// that start `array_stride` bytes apart from `base` (the KV pool: K and V of
// every layer); a block is `block_bytes` long. One launch for all arrays and
// pairs; 16-byte copies when base, array_stride and block_bytes allow. A
// pair naming a block outside [0, num_blocks) is skipped and reported as
// DeviceErrorCode::kBlockId (index the pair, value the bad id, limit
// num_blocks) unless `error` is null. src == dst copies nothing.
// REQUIRES: no block is the dst of two pairs or both a dst and a src (the
// pairs run in parallel, unlike the CPU's in-order copies); the block
// manager's copy-on-write always copies into freshly allocated blocks.
// Returns cudaErrorInvalidValue for negative sizes, array_stride <
// num_blocks * block_bytes, or a null pointer when there is work.
cudaError_t CopyBlocks(void* base, int64_t num_arrays, int64_t array_stride, int64_t block_bytes,
                       int64_t num_blocks, const int32_t* pairs, int64_t num_pairs,
                       DeviceError* error, cudaStream_t stream);

// dst[r, :] = bf16(src[r, :]) rounded to nearest even; src [rows, dim] F32
// with row stride src_stride, dst [rows, dim] BF16 bits with row stride
// dst_stride (elements). Returns cudaErrorInvalidValue for negative sizes, a
// stride < dim, or a null pointer when there is work.
cudaError_t CastF32ToBf16(const float* src, int64_t src_stride, uint16_t* dst, int64_t dst_stride,
                          int64_t rows, int64_t dim, cudaStream_t stream);

// As CastF32ToBf16, to IEEE binary16 (nearest even, overflow to infinity).
cudaError_t CastF32ToF16(const float* src, int64_t src_stride, uint16_t* dst, int64_t dst_stride,
                         int64_t rows, int64_t dim, cudaStream_t stream);

// dst[r, :] = float(src[r, :]) (exact); src BF16 bits, dst F32.
cudaError_t CastBf16ToF32(const uint16_t* src, int64_t src_stride, float* dst, int64_t dst_stride,
                          int64_t rows, int64_t dim, cudaStream_t stream);

// y[r, :] += bias for r in [0, rows). y: [rows, dim], row stride y_stride;
// bias: [dim]. Same errors as the casts.
cudaError_t AddBias(float* y, int64_t y_stride, const float* bias, int64_t rows, int64_t dim,
                    cudaStream_t stream);

}  // namespace kestrel::cuda

#endif  // KESTREL_KERNELS_CUDA_COPY_H_
