// Writes safetensors files: used by the synthetic checkpoint generator and by
// tests that need real-format checkpoints (dtype copies, corrupt files). The
// format is described in docs/safetensors.md.
#ifndef KESTREL_MODEL_SAFETENSORS_WRITER_H_
#define KESTREL_MODEL_SAFETENSORS_WRITER_H_

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "kernels/dtype.h"

namespace kestrel::model {

struct TensorToWrite {
  std::string name;
  kernels::DType dtype = kernels::DType::kF32;
  std::vector<int64_t> shape;
  // Raw little-endian element bytes; size must be numel * kernels::DTypeSize(dtype).
  std::string bytes;
};

// Serializes `tensors` (in the given order) into safetensors bytes. The JSON
// header is padded with spaces to a multiple of 8 bytes, as the reference
// writer does, so a file mapping keeps every tensor aligned.
std::string SerializeSafetensors(const std::vector<TensorToWrite>& tensors);

// Writes one file.
absl::Status WriteSafetensors(const std::filesystem::path& path,
                              const std::vector<TensorToWrite>& tensors);

// Writes `tensors` into `dir` as model.safetensors when their data fit in
// `max_shard_bytes`, else as model-0000i-of-0000n.safetensors shards plus
// model.safetensors.index.json (the Hugging Face layout).
absl::Status WriteCheckpoint(const std::filesystem::path& dir,
                             const std::vector<TensorToWrite>& tensors,
                             uint64_t max_shard_bytes);

// Converts float data to `dtype` bytes (F32, F16 or BF16, round to nearest even).
std::string EncodeFloats(const std::vector<float>& values, kernels::DType dtype);

}  // namespace kestrel::model

#endif  // KESTREL_MODEL_SAFETENSORS_WRITER_H_
