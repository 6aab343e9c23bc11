// Errors a kernel finds in its data rather than in its arguments: a token id
// outside the vocabulary, a KV slot or block id outside the pool, a row
// index outside the source. The host cannot see device data without a
// synchronization, so a kernel skips the bad entry (it never reads or writes
// out of bounds), records the first such error in a DeviceError in device
// memory, and the CUDA backend reports it as an InvalidArgument status at
// the next synchronization (kernels/cuda/cuda_backend.h).
//
//   if (id < 0 || id >= vocab) {
//     ReportDeviceError(error, DeviceErrorCode::kTokenId, t, id, vocab);
//     return;
//   }
#ifndef KESTREL_KERNELS_CUDA_DEVICE_ERROR_H_
#define KESTREL_KERNELS_CUDA_DEVICE_ERROR_H_

#include <cstdint>

#include "kernels/cuda/cuda_compat.h"

namespace kestrel::cuda {

enum class DeviceErrorCode : int32_t {
  kNone = 0,
  kTokenId = 1,   // EmbeddingGather: ids[index] = value, outside [0, limit)
  kKvSlot = 2,    // WriteKvCache: slot_mapping[index] = value, outside [-1, limit)
  kBlockId = 3,   // CopyBlocks / attention block tables: value outside [0, limit)
  kRowIndex = 4,  // GatherRows / Sample: a row index outside [0, limit)
  kSampleToken = 5,  // Sample: a TokenAdjust token outside [0, limit)
  kDraftToken = 6,   // Sample: row index's draft_token = value, outside [-1, limit)
};

// The first error since the backend last cleared it. 8-byte aligned, so it
// can be copied to the host in one piece.
struct DeviceError {
  int32_t code = 0;  // a DeviceErrorCode; 0 while there is none
  int32_t padding = 0;
  int64_t index = 0;  // which entry (token, pair, row) was bad
  int64_t value = 0;  // its value
  int64_t limit = 0;  // the bound it broke
};

#if defined(__CUDACC__) || defined(KESTREL_CUDA_EMULATION)
// Records the error unless an earlier one is already recorded. `error` may
// be null (the caller did not ask for reports). Device code only: host-only
// files of the nvcc build see just the struct.
__device__ __forceinline__ void ReportDeviceError(DeviceError* error, DeviceErrorCode code,
                                                  int64_t index, int64_t value, int64_t limit) {
  if (error == nullptr) return;
  if (atomicCAS(&error->code, 0, static_cast<int32_t>(code)) == 0) {
    error->index = index;
    error->value = value;
    error->limit = limit;
  }
}
#endif

}  // namespace kestrel::cuda

#endif  // KESTREL_KERNELS_CUDA_DEVICE_ERROR_H_
