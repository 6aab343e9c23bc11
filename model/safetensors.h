// Reads Hugging Face safetensors checkpoints (one file, or shards listed in
// model.safetensors.index.json) into memory the model can point into. The
// format and every check made on it are described in docs/safetensors.md.
// Nothing here trusts the file: a truncated, overlapping or inconsistent
// checkpoint is an error naming the tensor, never an out-of-bounds read.
#ifndef KESTREL_MODEL_SAFETENSORS_H_
#define KESTREL_MODEL_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "kernels/dtype.h"

namespace kestrel::model {

// One tensor's entry in a safetensors header.
struct TensorEntry {
  std::string name;
  kernels::DType dtype = kernels::DType::kF32;
  std::vector<int64_t> shape;
  // Byte range inside the data section (which starts right after the
  // header), validated: begin <= end <= data section size,
  // end - begin == numel * kernels::DTypeSize(dtype), begin % kernels::DTypeSize(dtype) == 0.
  uint64_t begin = 0;
  uint64_t end = 0;

  int64_t numel() const;
};

// A parsed safetensors header.
struct SafetensorsHeader {
  // Size of the JSON header in bytes (the little-endian u64 at offset 0).
  uint64_t header_size = 0;
  // File offset of the data section: 8 + header_size.
  uint64_t data_offset = 0;
  // Tensors sorted by `begin`; no two overlap.
  std::vector<TensorEntry> tensors;
};

// Upper bound on the JSON header, as in the reference implementation: real
// headers are a few hundred KB; this keeps a corrupt length from allocating
// gigabytes.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100u << 20;

// Parses and validates the header of a safetensors file whose total size is
// `file_size` bytes. `prefix` holds the file's first bytes: at least
// 8 + header_size of them (more is fine; the fuzz target passes the whole
// file). `file_name` only labels error messages.
absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(std::string_view prefix,
                                                         uint64_t file_size,
                                                         std::string_view file_name = "input");

// A tensor in a loaded checkpoint. `data` points into memory owned by the
// SafetensorsCheckpoint and lives as long as it.
struct LoadedTensor {
  std::string name;
  kernels::DType dtype = kernels::DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // aligned to kernels::DTypeSize(dtype)
  uint64_t nbytes = 0;
  std::string file;  // which shard it came from, for error messages
};

// A whole checkpoint held in memory. Immutable after Load; thread-safe for
// concurrent readers.
class SafetensorsCheckpoint {
 public:
  enum class Storage {
    // Anonymous memory (madvise(MADV_HUGEPAGE)), filled with pread. The
    // default: on this VM decoding from file-backed pages is ~2x slower
    // (page-cache 4 KiB pages, TLB misses), see engine/model_bench.
    kAnonymous,
    // PROT_READ file mapping; starts instantly and shares the page cache.
    kFileMmap,
  };

  struct Options {
    // Directory holding model.safetensors or model.safetensors.index.json.
    std::filesystem::path dir = {};
    // How tensor bytes are held (default kAnonymous).
    Storage storage = Storage::kAnonymous;
  };

  static absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> Load(const Options& options);
  // One safetensors file's bytes already in memory (a checkpoint embedded in
  // the binary, or generated), checked as a file is and copied into
  // anonymous memory (Storage::kAnonymous): `bytes` need not outlive the
  // checkpoint nor be aligned. `file_name` labels errors and
  // LoadedTensor::file.
  static absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> FromMemory(
      std::string_view bytes, std::string_view file_name);

  ~SafetensorsCheckpoint();
  SafetensorsCheckpoint(const SafetensorsCheckpoint&) = delete;
  SafetensorsCheckpoint& operator=(const SafetensorsCheckpoint&) = delete;

  // nullptr when absent.
  const LoadedTensor* Find(std::string_view name) const;
  // Gives tensor `name`'s memory back to the OS once its contents live
  // elsewhere (quantized at load): madvise(MADV_DONTNEED) on the whole
  // pages inside its bytes (a page it shares with a neighbour is kept).
  // Anonymous pages are freed; a file mapping's pages are dropped (the
  // page cache keeps them). Afterwards the tensor's `data` is nullptr, so
  // nothing can read it. Returns the bytes released (0 for an absent or
  // already released tensor). Not thread-safe: call before the checkpoint
  // is shared.
  uint64_t Release(std::string_view name);
  const std::vector<LoadedTensor>& tensors() const { return tensors_; }
  // Bytes of tensor data held (sum over shards).
  uint64_t data_bytes() const { return data_bytes_; }
  Storage storage() const { return storage_; }

 private:
  struct Mapping {
    void* addr = nullptr;
    size_t length = 0;
  };
  SafetensorsCheckpoint() = default;
  absl::Status LoadFile(const std::filesystem::path& path, Storage storage);
  // `size` bytes of anonymous memory starting on a 2 MiB boundary (so
  // transparent huge pages can back it), unmapped in the destructor.
  // `what` names the source in errors.
  absl::StatusOr<char*> AllocateAnonymous(uint64_t size, const std::string& what);
  // Takes over the tensors of one file whose data section (`data_size`
  // bytes) starts at `base`.
  absl::Status AddTensors(SafetensorsHeader header, const char* base, uint64_t data_size,
                          const std::string& file_name);

  Storage storage_ = Storage::kAnonymous;
  uint64_t data_bytes_ = 0;
  std::vector<Mapping> mappings_;  // munmap'ed in the destructor
  std::vector<LoadedTensor> tensors_;
  absl::flat_hash_map<std::string, size_t> index_;  // name -> tensors_ index
};

}  // namespace kestrel::model

#endif  // KESTREL_MODEL_SAFETENSORS_H_
