#include "model/safetensors_writer.h"

#include <cstdio>
#include <fstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace kestrel::model {
namespace {

using json = nlohmann::json;

absl::Status WriteFile(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::InternalError(absl::StrCat("cannot create ", path.string()));
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path.string()));
  return absl::OkStatus();
}

// The 8-byte length and the padded JSON header for `tensors`.
std::string HeaderBytes(const std::vector<const TensorToWrite*>& tensors) {
  json header = json::object();
  header["__metadata__"] = {{"format", "pt"}};
  uint64_t offset = 0;
  for (const TensorToWrite* t : tensors) {
    header[t->name] = {{"dtype", std::string(kernels::DTypeName(t->dtype))},
                       {"shape", t->shape},
                       {"data_offsets", {offset, offset + t->bytes.size()}}};
    offset += t->bytes.size();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  const uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + text;
}

std::vector<const TensorToWrite*> Pointers(const std::vector<TensorToWrite>& tensors) {
  std::vector<const TensorToWrite*> p;
  for (const TensorToWrite& t : tensors) p.push_back(&t);
  return p;
}

// Streams header and tensor bytes, so multi-GB checkpoints are never
// concatenated in memory.
absl::Status WriteTensors(const std::filesystem::path& path,
                          const std::vector<const TensorToWrite*>& tensors) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::InternalError(absl::StrCat("cannot create ", path.string()));
  const std::string header = HeaderBytes(tensors);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  for (const TensorToWrite* t : tensors) {
    out.write(t->bytes.data(), static_cast<std::streamsize>(t->bytes.size()));
  }
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path.string()));
  return absl::OkStatus();
}

}  // namespace

std::string SerializeSafetensors(const std::vector<TensorToWrite>& tensors) {
  std::string out = HeaderBytes(Pointers(tensors));
  for (const TensorToWrite& t : tensors) out += t.bytes;
  return out;
}

absl::Status WriteSafetensors(const std::filesystem::path& path,
                              const std::vector<TensorToWrite>& tensors) {
  return WriteTensors(path, Pointers(tensors));
}

absl::Status WriteCheckpoint(const std::filesystem::path& dir,
                             const std::vector<TensorToWrite>& tensors,
                             uint64_t max_shard_bytes) {
  std::vector<std::vector<const TensorToWrite*>> shards(1);
  uint64_t total = 0, current = 0;
  for (const TensorToWrite& t : tensors) {
    if (current > 0 && current + t.bytes.size() > max_shard_bytes) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(&t);
    current += t.bytes.size();
    total += t.bytes.size();
  }
  if (shards.size() == 1) return WriteSafetensors(dir / "model.safetensors", tensors);

  json weight_map = json::object();
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string name =
        absl::StrFormat("model-%05d-of-%05d.safetensors", i + 1, shards.size());
    for (const TensorToWrite* t : shards[i]) weight_map[t->name] = name;
    RETURN_IF_ERROR(WriteTensors(dir / name, shards[i]));
  }
  json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  return WriteFile(dir / "model.safetensors.index.json", index.dump(2));
}

std::string EncodeFloats(const std::vector<float>& values, kernels::DType dtype) {
  std::string out;
  if (dtype == kernels::DType::kF32) {
    out.resize(values.size() * 4);
    std::memcpy(out.data(), values.data(), out.size());
    return out;
  }
  out.resize(values.size() * 2);
  for (size_t i = 0; i < values.size(); ++i) {
    const uint16_t h = dtype == kernels::DType::kBF16 ? kernels::F32ToBf16(values[i]) : kernels::F32ToF16(values[i]);
    std::memcpy(out.data() + 2 * i, &h, 2);
  }
  return out;
}

}  // namespace kestrel::model
