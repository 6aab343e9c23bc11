#include "model/safetensors.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "model/safetensors_writer.h"
#include "testing/shared_data.h"

namespace kestrel::model {
namespace {

namespace fs = std::filesystem;
using Storage = SafetensorsCheckpoint::Storage;

fs::path FreshDir(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  fs::path dir = fs::path(tmp != nullptr ? tmp : "/tmp") / ("safetensors_test_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

void WriteText(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A file with a hand-written header (no padding) followed by `data`.
std::string RawFile(const std::string& header, const std::string& data) {
  std::string s(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s + header + data;
}

std::vector<TensorToWrite> SmallTensors() {
  return {
      {"w", kernels::DType::kF32, {2, 3}, EncodeFloats({1, 2, 3, 4, 5, 6}, kernels::DType::kF32)},
      {"b", kernels::DType::kBF16, {3}, EncodeFloats({0.5f, -1.0f, 2.0f}, kernels::DType::kBF16)},
      {"h", kernels::DType::kF16, {2}, EncodeFloats({0.25f, 3.0f}, kernels::DType::kF16)},
  };
}

std::string ErrorOfParse(const std::string& file) {
  auto h = ParseSafetensorsHeader(file, file.size(), "f.safetensors");
  REQUIRE_FALSE(h.ok());
  return std::string(h.status().message());
}

std::string ErrorOfLoad(const fs::path& dir) {
  auto c = SafetensorsCheckpoint::Load({.dir = dir});
  REQUIRE_FALSE(c.ok());
  return std::string(c.status().message());
}

void CheckSmall(const SafetensorsCheckpoint& c) {
  const LoadedTensor* w = c.Find("w");
  REQUIRE(w != nullptr);
  CHECK(w->shape == std::vector<int64_t>{2, 3});
  CHECK(w->nbytes == 24);
  CHECK(kernels::LoadAsF32(w->data, w->dtype, 5) == 6.0f);
  const LoadedTensor* b = c.Find("b");
  REQUIRE(b != nullptr);
  CHECK(b->dtype == kernels::DType::kBF16);
  CHECK(kernels::LoadAsF32(b->data, b->dtype, 1) == -1.0f);
  const LoadedTensor* h = c.Find("h");
  REQUIRE(h != nullptr);
  CHECK(kernels::LoadAsF32(h->data, h->dtype, 0) == 0.25f);
  CHECK(reinterpret_cast<uintptr_t>(w->data) % 4 == 0);
  CHECK(c.Find("nope") == nullptr);
}

TEST_CASE("single file round trip, anonymous memory and file mmap", "[safetensors]") {
  const fs::path dir = FreshDir("single");
  REQUIRE(WriteSafetensors(dir / "model.safetensors", SmallTensors()).ok());
  for (Storage storage : {Storage::kAnonymous, Storage::kFileMmap}) {
    auto c = SafetensorsCheckpoint::Load({.dir = dir, .storage = storage});
    REQUIRE(c.ok());
    CHECK((*c)->data_bytes() == 24 + 6 + 4);
    CheckSmall(**c);
  }
}

TEST_CASE("from memory: the same tensors, copied and aligned; corrupt bytes are errors",
          "[safetensors]") {
  // One byte in front makes the source misaligned: the copy must not be.
  std::string bytes = "x" + SerializeSafetensors(SmallTensors());
  auto c = SafetensorsCheckpoint::FromMemory(std::string_view(bytes).substr(1), "embedded");
  REQUIRE(c.ok());
  // Overwriting the source shows the checkpoint holds its own copy.
  std::memset(bytes.data(), 0, bytes.size());
  CHECK((*c)->data_bytes() == 24 + 6 + 4);
  CHECK((*c)->storage() == Storage::kAnonymous);
  CheckSmall(**c);
  CHECK((*c)->Find("w")->file == "embedded");

  const std::string good = SerializeSafetensors(SmallTensors());
  auto truncated = SafetensorsCheckpoint::FromMemory(good.substr(0, good.size() - 3), "embedded");
  REQUIRE_FALSE(truncated.ok());
  CHECK_THAT(std::string(truncated.status().message()),
             Catch::StartsWith("embedded: tensor \"h\"") &&
                 Catch::Contains("run past the end of the data"));
  auto tiny = SafetensorsCheckpoint::FromMemory("abc", "embedded");
  REQUIRE_FALSE(tiny.ok());
  CHECK_THAT(std::string(tiny.status().message()),
             Catch::Contains("too short for the 8-byte header length"));
}

// Release gives back the whole pages inside a tensor and nothing else: its
// neighbours, which share its first and last pages, keep their bytes.
TEST_CASE("Release frees a tensor's whole pages, never its neighbours'", "[safetensors]") {
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const int64_t n = 3 * static_cast<int64_t>(page) / 4 + 99;  // F32: ~3 pages of bytes
  std::vector<TensorToWrite> tensors = {
      {"a", kernels::DType::kF32, {5}, EncodeFloats({1, 2, 3, 4, 5}, kernels::DType::kF32)},
      {"big", kernels::DType::kF32, {n}, EncodeFloats(std::vector<float>(n, 7.0f), kernels::DType::kF32)},
      {"c", kernels::DType::kF32, {3}, EncodeFloats({8, 9, 10}, kernels::DType::kF32)}};
  const fs::path dir = FreshDir("release");
  REQUIRE(WriteSafetensors(dir / "model.safetensors", tensors).ok());
  for (Storage storage : {Storage::kAnonymous, Storage::kFileMmap}) {
    auto ckpt = SafetensorsCheckpoint::Load({.dir = dir, .storage = storage});
    REQUIRE(ckpt.ok());
    const uintptr_t begin = reinterpret_cast<uintptr_t>((*ckpt)->Find("big")->data);
    const uintptr_t first = (begin + page - 1) / page * page;
    const uintptr_t last = (begin + static_cast<uintptr_t>(n) * 4) / page * page;
    REQUIRE(last > first);
    CHECK((*ckpt)->Release("big") == last - first);
    CHECK((*ckpt)->Find("big")->data == nullptr);
    CHECK((*ckpt)->Release("big") == 0);  // already released
    CHECK((*ckpt)->Release("absent") == 0);
    CHECK(std::memcmp((*ckpt)->Find("a")->data, tensors[0].bytes.data(), 20) == 0);
    CHECK(std::memcmp((*ckpt)->Find("c")->data, tensors[2].bytes.data(), 12) == 0);
    if (storage == Storage::kAnonymous) {
      // Anonymous pages are gone (a file mapping's stay in the page cache,
      // which mincore reports).
      std::vector<unsigned char> resident((last - first) / page);
      REQUIRE(::mincore(reinterpret_cast<void*>(first), last - first, resident.data()) == 0);
      for (unsigned char r : resident) CHECK((r & 1) == 0);
    }
  }
}

TEST_CASE("sharded checkpoint through model.safetensors.index.json", "[safetensors]") {
  const fs::path dir = FreshDir("sharded");
  REQUIRE(WriteCheckpoint(dir, SmallTensors(), /*max_shard_bytes=*/24).ok());
  REQUIRE(fs::exists(dir / "model.safetensors.index.json"));
  REQUIRE(fs::exists(dir / "model-00002-of-00002.safetensors"));
  auto c = SafetensorsCheckpoint::Load({.dir = dir});
  REQUIRE(c.ok());
  CheckSmall(**c);
  CHECK((*c)->Find("w")->file == "model-00001-of-00002.safetensors");
  CHECK((*c)->Find("h")->file == "model-00002-of-00002.safetensors");

  SECTION("missing shard") {
    fs::remove(dir / "model-00002-of-00002.safetensors");
    CHECK_THAT(ErrorOfLoad(dir), Catch::Contains("missing shard") &&
                                     Catch::Contains("model-00002-of-00002.safetensors"));
  }
  SECTION("index names a tensor no shard has") {
    WriteText(dir / "model.safetensors.index.json",
              R"({"weight_map": {"w": "model-00001-of-00002.safetensors",
                  "b": "model-00002-of-00002.safetensors", "h": "model-00002-of-00002.safetensors",
                  "ghost": "model-00001-of-00002.safetensors"}})");
    CHECK(ErrorOfLoad(dir) ==
          "model.safetensors.index.json: tensor \"ghost\" is listed in shard "
          "model-00001-of-00002.safetensors but no shard contains it");
  }
  SECTION("shard holds a tensor the index does not list") {
    WriteText(dir / "model.safetensors.index.json",
              R"({"weight_map": {"w": "model-00001-of-00002.safetensors",
                  "b": "model-00002-of-00002.safetensors"}})");
    CHECK(ErrorOfLoad(dir) ==
          "tensor \"h\" in shard model-00002-of-00002.safetensors is missing from "
          "model.safetensors.index.json");
  }
  SECTION("index escaping the directory") {
    WriteText(dir / "model.safetensors.index.json", R"({"weight_map": {"w": "../etc/passwd"}})");
    CHECK_THAT(ErrorOfLoad(dir), Catch::Contains("is not a file name in the model directory"));
  }
  SECTION("index is not JSON") {
    WriteText(dir / "model.safetensors.index.json", "{");
    CHECK(ErrorOfLoad(dir) == "model.safetensors.index.json: not a JSON object");
  }
}

TEST_CASE("loads stories260K", "[safetensors]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  for (Storage storage : {Storage::kAnonymous, Storage::kFileMmap}) {
    auto c = SafetensorsCheckpoint::Load({.dir = dir, .storage = storage});
    REQUIRE(c.ok());
    CHECK((*c)->tensors().size() == 47);
    CHECK((*c)->data_bytes() == 1040128);
    const LoadedTensor* e = (*c)->Find("model.embed_tokens.weight");
    REQUIRE(e != nullptr);
    CHECK(e->shape == std::vector<int64_t>{512, 64});
  }
}

TEST_CASE("missing and truncated files name the problem", "[safetensors]") {
  const fs::path dir = FreshDir("corrupt");
  CHECK_THAT(ErrorOfLoad(dir), Catch::StartsWith("no model.safetensors"));
  const std::string good = SerializeSafetensors(SmallTensors());
  WriteText(dir / "model.safetensors", good.substr(0, good.size() - 3));
  // Tensors are laid out w, b, h: the last one runs off the end.
  CHECK_THAT(ErrorOfLoad(dir), Catch::Contains("tensor \"h\"") &&
                                   Catch::Contains("run past the end of the data"));
  WriteText(dir / "model.safetensors", good.substr(0, 20));
  CHECK_THAT(ErrorOfLoad(dir), Catch::Contains("runs past the end of the 20-byte file"));
  WriteText(dir / "model.safetensors", "abc");
  CHECK_THAT(ErrorOfLoad(dir), Catch::Contains("too short for the 8-byte header length"));
}

TEST_CASE("header validation", "[safetensors]") {
  const std::string f32x2 = R"("dtype":"F32","shape":[2])";
  CHECK(ErrorOfParse(RawFile("{", "")) == "f.safetensors: header is not valid JSON");
  CHECK(ErrorOfParse(RawFile("[]", "")) == "f.safetensors: header is not a JSON object");
  CHECK(ErrorOfParse(RawFile(R"({"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}})", "x")) ==
        "f.safetensors: tensor \"a\": unknown dtype \"Q4\"");
  CHECK(ErrorOfParse(RawFile(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})",
                             "xxxx")) ==
        "f.safetensors: tensor \"a\": shape entries must be non-negative integers, got [-1]");
  CHECK(ErrorOfParse(RawFile(R"({"a":{)" + f32x2 + R"(,"data_offsets":[0,12]}})",
                             std::string(12, 'x'))) ==
        "f.safetensors: tensor \"a\": data_offsets [0,12] span 12 bytes but shape [2] of F32 "
        "needs 8");
  CHECK(ErrorOfParse(RawFile(R"({"a":{)" + f32x2 + R"(,"data_offsets":[2,10]}})",
                             std::string(12, 'x'))) ==
        "f.safetensors: tensor \"a\": data offset 2 is not aligned to the 4-byte element size");
  CHECK(ErrorOfParse(RawFile(R"({"a":{)" + f32x2 + R"(,"data_offsets":[0,8]},"b":{)" + f32x2 +
                                 R"(,"data_offsets":[4,12]}})",
                             std::string(12, 'x'))) ==
        "f.safetensors: tensor \"b\": bytes [4, 12) overlap tensor \"a\" [0, 8)");
  CHECK(ErrorOfParse(RawFile(R"({"a":{)" + f32x2 + R"(,"data_offsets":[8,0]}})", "")) ==
        "f.safetensors: tensor \"a\": data_offsets [8,0] end before begin");
  CHECK(ErrorOfParse(RawFile(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4],)"
                             R"("data_offsets":[0,0]}})", "")) ==
        "f.safetensors: tensor \"a\": shape [4294967296,4294967296,4] overflows");
  CHECK(ErrorOfParse(RawFile(R"({"a":{"dtype":"F32","shape":[1]}})", "xxxx")) ==
        "f.safetensors: tensor \"a\": data_offsets must be two non-negative integers");
  CHECK(ErrorOfParse(RawFile(R"({"__metadata__":{"format":1}})", "")) ==
        "f.safetensors: __metadata__.format is not a string");
  std::string huge(8, '\xff');
  CHECK_THAT(ErrorOfParse(huge + "{}"), Catch::Contains("exceeds the 104857600-byte limit"));

}

TEST_CASE("zero-size tensors parse", "[safetensors]") {
  const std::string file = RawFile(
      R"({"e":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
      std::string(8, 'x'));
  auto h = ParseSafetensorsHeader(file, file.size(), "f");
  REQUIRE(h.ok());
  REQUIRE(h->tensors.size() == 2);
  CHECK(h->tensors[0].name == "e");
  CHECK(h->data_offset + 8 == file.size());
}

}  // namespace
}  // namespace kestrel::model
