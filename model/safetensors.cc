#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace kestrel::model {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

constexpr size_t kHugePage = size_t{2} << 20;

absl::Status TensorError(const std::string& file, const std::string& tensor,
                         const std::string& what) {
  return absl::InvalidArgumentError(
      absl::StrCat(file, ": tensor \"", tensor, "\": ", what));
}

absl::Status ParseEntry(const std::string& file, const std::string& name, const json& v,
                        uint64_t data_size, TensorEntry& out) {
  if (!v.is_object()) return TensorError(file, name, "header entry is not an object");
  out.name = name;
  auto dt = v.find("dtype");
  if (dt == v.end() || !dt->is_string()) return TensorError(file, name, "missing string field dtype");
  const std::optional<kernels::DType> dtype = kernels::ParseDTypeName(dt->get_ref<const std::string&>());
  if (!dtype) return TensorError(file, name, absl::StrCat("unknown dtype ", dt->dump()));
  out.dtype = *dtype;

  auto sh = v.find("shape");
  if (sh == v.end() || !sh->is_array()) return TensorError(file, name, "missing array field shape");
  uint64_t numel = 1;
  for (const json& d : *sh) {
    if (!d.is_number_unsigned()) {
      return TensorError(file, name, absl::StrCat("shape entries must be non-negative integers, got ", sh->dump()));
    }
    const uint64_t dim = d.get<uint64_t>();
    if (dim > (uint64_t{1} << 62) || __builtin_mul_overflow(numel, dim, &numel)) {
      return TensorError(file, name, absl::StrCat("shape ", sh->dump(), " overflows"));
    }
    out.shape.push_back(static_cast<int64_t>(dim));
  }
  uint64_t nbytes;
  if (numel > (uint64_t{1} << 62) ||
      __builtin_mul_overflow(numel, static_cast<uint64_t>(kernels::DTypeSize(out.dtype)), &nbytes)) {
    return TensorError(file, name, absl::StrCat("shape ", sh->dump(), " overflows"));
  }

  auto off = v.find("data_offsets");
  if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
      !(*off)[1].is_number_unsigned()) {
    return TensorError(file, name, "data_offsets must be two non-negative integers");
  }
  out.begin = (*off)[0].get<uint64_t>();
  out.end = (*off)[1].get<uint64_t>();
  if (out.begin > out.end) {
    return TensorError(file, name, absl::StrCat("data_offsets ", off->dump(), " end before begin"));
  }
  if (out.end > data_size) {
    return TensorError(file, name,
                       absl::StrCat("data_offsets ", off->dump(), " run past the end of the data (",
                                    data_size, " bytes): file truncated?"));
  }
  if (out.end - out.begin != nbytes) {
    return TensorError(file, name,
                       absl::StrCat("data_offsets ", off->dump(), " span ", out.end - out.begin,
                                    " bytes but shape ", sh->dump(), " of ", kernels::DTypeName(out.dtype),
                                    " needs ", nbytes));
  }
  if (out.begin % kernels::DTypeSize(out.dtype) != 0) {
    return TensorError(file, name,
                       absl::StrCat("data offset ", out.begin, " is not aligned to the ",
                                    kernels::DTypeSize(out.dtype), "-byte element size"));
  }
  return absl::OkStatus();
}

uint64_t ReadLe64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

absl::Status ErrnoError(const std::string& what, const fs::path& path) {
  return absl::InternalError(absl::StrCat(what, " ", path.string(), ": ", std::strerror(errno)));
}

// Reads exactly `n` bytes at `offset`; a short read means the file changed or
// is truncated under us.
absl::Status PreadAll(int fd, char* dst, uint64_t n, uint64_t offset, const fs::path& path) {
  while (n > 0) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, uint64_t{1} << 30));
    const ssize_t got = ::pread(fd, dst, chunk, static_cast<off_t>(offset));
    if (got < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("read", path);
    }
    if (got == 0) {
      return absl::DataLossError(absl::StrCat(path.string(), ": unexpected end of file at byte ", offset));
    }
    dst += got;
    n -= static_cast<uint64_t>(got);
    offset += static_cast<uint64_t>(got);
  }
  return absl::OkStatus();
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

int64_t TensorEntry::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(std::string_view prefix,
                                                         uint64_t file_size,
                                                         std::string_view file_name_view) {
  const std::string file_name(file_name_view);
  if (file_size < 8 || prefix.size() < 8) {
    return absl::InvalidArgumentError(
        absl::StrCat(file_name, ": ", file_size, " bytes, too short for the 8-byte header length"));
  }
  SafetensorsHeader h;
  h.header_size = ReadLe64(prefix.data());
  if (h.header_size > kMaxSafetensorsHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat(file_name, ": header length ", h.header_size,
                                                   " exceeds the ", kMaxSafetensorsHeaderBytes,
                                                   "-byte limit"));
  }
  if (h.header_size > file_size - 8) {
    return absl::InvalidArgumentError(absl::StrCat(file_name, ": header length ", h.header_size,
                                                   " runs past the end of the ", file_size,
                                                   "-byte file: truncated?"));
  }
  if (prefix.size() - 8 < h.header_size) {
    return absl::InvalidArgumentError(absl::StrCat(file_name, ": only ", prefix.size(),
                                                   " header bytes available, need ",
                                                   8 + h.header_size));
  }
  h.data_offset = 8 + h.header_size;
  const uint64_t data_size = file_size - h.data_offset;

  const json obj = json::parse(prefix.substr(8, h.header_size), nullptr, /*allow_exceptions=*/false);
  if (obj.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(file_name, ": header is not valid JSON"));
  }
  if (!obj.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(file_name, ": header is not a JSON object"));
  }
  h.tensors.reserve(obj.size());
  for (const auto& [name, value] : obj.items()) {
    if (name == "__metadata__") {
      // Free-form string->string map by the spec; we only insist on the shape.
      if (!value.is_object()) {
        return absl::InvalidArgumentError(absl::StrCat(file_name, ": __metadata__ is not an object"));
      }
      for (const auto& [k, v] : value.items()) {
        if (!v.is_string()) {
          return absl::InvalidArgumentError(
              absl::StrCat(file_name, ": __metadata__.", k, " is not a string"));
        }
      }
      continue;
    }
    TensorEntry entry;
    RETURN_IF_ERROR(ParseEntry(file_name, name, value, data_size, entry));
    h.tensors.push_back(std::move(entry));
  }

  std::sort(h.tensors.begin(), h.tensors.end(), [](const TensorEntry& a, const TensorEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  // Empty tensors occupy no bytes and cannot overlap anything.
  const TensorEntry* furthest = nullptr;
  for (const TensorEntry& t : h.tensors) {
    if (t.begin == t.end) continue;
    if (furthest != nullptr && t.begin < furthest->end) {
      return TensorError(file_name, t.name,
                         absl::StrCat("bytes [", t.begin, ", ", t.end, ") overlap tensor \"",
                                      furthest->name, "\" [", furthest->begin, ", ",
                                      furthest->end, ")"));
    }
    if (furthest == nullptr || t.end > furthest->end) furthest = &t;
  }
  return h;
}

SafetensorsCheckpoint::~SafetensorsCheckpoint() {
  for (const Mapping& m : mappings_) ::munmap(m.addr, m.length);
}

const LoadedTensor* SafetensorsCheckpoint::Find(std::string_view name) const {
  auto it = index_.find(absl::string_view(name.data(), name.size()));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

uint64_t SafetensorsCheckpoint::Release(std::string_view name) {
  auto it = index_.find(absl::string_view(name.data(), name.size()));
  if (it == index_.end()) return 0;
  LoadedTensor& t = tensors_[it->second];
  if (t.data == nullptr) return 0;
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(t.data);
  const uintptr_t first = (begin + page - 1) / page * page;
  const uintptr_t last = (begin + t.nbytes) / page * page;
  t.data = nullptr;
  if (last <= first) return 0;
  // Best effort: memory that stays resident is only a missed saving.
  if (::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED) != 0) return 0;
  return last - first;
}

absl::StatusOr<char*> SafetensorsCheckpoint::AllocateAnonymous(uint64_t size,
                                                               const std::string& what) {
  // Over-allocate by one huge page and trim so the data starts on a 2 MiB
  // boundary, letting the kernel back it with transparent huge pages.
  const size_t length = (size + kHugePage - 1) / kHugePage * kHugePage;
  void* raw = ::mmap(nullptr, length + kHugePage, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED) return ErrnoError("mmap anonymous memory for", what);
  const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (start + kHugePage - 1) / kHugePage * kHugePage;
  if (aligned > start) ::munmap(raw, aligned - start);
  const uintptr_t tail = aligned + length;
  const uintptr_t raw_end = start + length + kHugePage;
  if (raw_end > tail) ::munmap(reinterpret_cast<void*>(tail), raw_end - tail);
  void* addr = reinterpret_cast<void*>(aligned);
  mappings_.push_back({addr, length});
  // Best effort: without THP support the memory still works.
  (void)::madvise(addr, length, MADV_HUGEPAGE);
  return static_cast<char*>(addr);
}

absl::Status SafetensorsCheckpoint::AddTensors(SafetensorsHeader header, const char* base,
                                               uint64_t data_size, const std::string& file_name) {
  for (TensorEntry& e : header.tensors) {
    if (index_.contains(e.name)) {
      return TensorError(file_name, e.name,
                         absl::StrCat("also present in ", tensors_[index_[e.name]].file));
    }
    LoadedTensor t;
    t.name = std::move(e.name);
    t.dtype = e.dtype;
    t.shape = std::move(e.shape);
    t.data = base == nullptr ? nullptr : base + e.begin;
    t.nbytes = e.end - e.begin;
    t.file = file_name;
    index_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
  }
  data_bytes_ += data_size;
  return absl::OkStatus();
}

absl::Status SafetensorsCheckpoint::LoadFile(const fs::path& path, Storage storage) {
  Fd fd;
  fd.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd.fd < 0) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat("missing shard ", path.string()));
    return ErrnoError("open", path);
  }
  struct stat st;
  if (::fstat(fd.fd, &st) != 0) return ErrnoError("stat", path);
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  const std::string file_name = path.filename().string();

  std::string prefix(std::min<uint64_t>(file_size, 8), '\0');
  RETURN_IF_ERROR(PreadAll(fd.fd, prefix.data(), prefix.size(), 0, path));
  if (prefix.size() == 8) {
    const uint64_t n = ReadLe64(prefix.data());
    if (n <= kMaxSafetensorsHeaderBytes && n <= file_size - 8) {
      prefix.resize(8 + n);
      RETURN_IF_ERROR(PreadAll(fd.fd, prefix.data() + 8, n, 8, path));
    }
  }
  ASSIGN_OR_RETURN(SafetensorsHeader header, ParseSafetensorsHeader(prefix, file_size, file_name));
  const uint64_t data_size = file_size - header.data_offset;

  // A file mapping puts tensors at data_offset + begin; if the header length
  // breaks element alignment, copy this shard instead of handing out
  // misaligned pointers.
  if (storage == Storage::kFileMmap && header.data_offset % 8 != 0) storage = Storage::kAnonymous;

  const char* base = nullptr;
  if (data_size > 0 && storage == Storage::kFileMmap) {
    void* addr = ::mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd.fd, 0);
    if (addr == MAP_FAILED) return ErrnoError("mmap", path);
    mappings_.push_back({addr, file_size});
    base = static_cast<const char*>(addr) + header.data_offset;
  } else if (data_size > 0) {
    ASSIGN_OR_RETURN(char* addr, AllocateAnonymous(data_size, path.string()));
    RETURN_IF_ERROR(PreadAll(fd.fd, addr, data_size, header.data_offset, path));
    base = addr;
  }
  return AddTensors(std::move(header), base, data_size, file_name);
}

absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> SafetensorsCheckpoint::FromMemory(
    std::string_view bytes, std::string_view file_name) {
  std::unique_ptr<SafetensorsCheckpoint> ckpt(new SafetensorsCheckpoint());
  ckpt->storage_ = Storage::kAnonymous;
  const std::string name(file_name);
  ASSIGN_OR_RETURN(SafetensorsHeader header, ParseSafetensorsHeader(bytes, bytes.size(), name));
  const uint64_t data_size = bytes.size() - header.data_offset;
  const char* base = nullptr;
  if (data_size > 0) {
    // A copy, as from a file: `bytes` need not stay alive or be aligned.
    ASSIGN_OR_RETURN(char* addr, ckpt->AllocateAnonymous(data_size, name));
    std::memcpy(addr, bytes.data() + header.data_offset, data_size);
    base = addr;
  }
  RETURN_IF_ERROR(ckpt->AddTensors(std::move(header), base, data_size, name));
  return ckpt;
}

absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> SafetensorsCheckpoint::Load(
    const Options& options) {
  std::unique_ptr<SafetensorsCheckpoint> ckpt(new SafetensorsCheckpoint());
  ckpt->storage_ = options.storage;
  const fs::path single = options.dir / "model.safetensors";
  const fs::path index_path = options.dir / "model.safetensors.index.json";
  std::error_code ec;
  if (fs::exists(single, ec)) {
    RETURN_IF_ERROR(ckpt->LoadFile(single, options.storage));
    return ckpt;
  }
  if (!fs::exists(index_path, ec)) {
    return absl::NotFoundError(absl::StrCat("no model.safetensors or model.safetensors.index.json in ",
                                            options.dir.string()));
  }
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(index_path));
  const json index = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (index.is_discarded() || !index.is_object()) {
    return absl::InvalidArgumentError("model.safetensors.index.json: not a JSON object");
  }
  auto wm = index.find("weight_map");
  if (wm == index.end() || !wm->is_object()) {
    return absl::InvalidArgumentError("model.safetensors.index.json: missing object weight_map");
  }
  std::map<std::string, std::string> weight_map;  // tensor -> shard
  std::set<std::string> shards;
  for (const auto& [name, file] : wm->items()) {
    if (!file.is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model.safetensors.index.json: weight_map[\"", name, "\"] is not a string"));
    }
    const std::string& f = file.get_ref<const std::string&>();
    // Shards live beside the index; anything else is a path escape.
    if (f.empty() || f.find('/') != std::string::npos || f == "." || f == "..") {
      return absl::InvalidArgumentError(absl::StrCat(
          "model.safetensors.index.json: weight_map[\"", name, "\"] = \"", f,
          "\" is not a file name in the model directory"));
    }
    weight_map[name] = f;
    shards.insert(f);
  }
  for (const std::string& shard : shards) {
    RETURN_IF_ERROR(ckpt->LoadFile(options.dir / shard, options.storage));
  }
  for (const auto& [name, shard] : weight_map) {
    const LoadedTensor* t = ckpt->Find(name);
    if (t == nullptr || t->file != shard) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model.safetensors.index.json: tensor \"", name, "\" is listed in shard ", shard,
          t == nullptr ? " but no shard contains it" : absl::StrCat(" but found in ", t->file)));
    }
  }
  for (const LoadedTensor& t : ckpt->tensors()) {
    if (!weight_map.contains(t.name)) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", t.name, "\" in shard ", t.file,
                                                     " is missing from model.safetensors.index.json"));
    }
  }
  return ckpt;
}

}  // namespace kestrel::model
