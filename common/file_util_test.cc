#include "common/file_util.h"

#include <cstdlib>
#include <fstream>
#include <string>

#include <catch2/catch.hpp>

namespace kestrel {
namespace {

TEST_CASE("ReadFileToString returns the bytes or names the path", "[file_util]") {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::filesystem::path dir = tmp != nullptr ? tmp : "/tmp";
  const std::filesystem::path file = dir / "file_util_test.bin";
  const std::string bytes("a\0b\nc", 5);
  std::ofstream(file, std::ios::binary) << bytes;
  auto read = ReadFileToString(file);
  REQUIRE(read.ok());
  CHECK(*read == bytes);

  auto missing = ReadFileToString(dir / "no_such_file");
  CHECK(absl::IsNotFound(missing.status()));
  CHECK(missing.status().message() ==
        "cannot open " + (dir / "no_such_file").string() + ": No such file or directory");

  auto directory = ReadFileToString(dir);
  CHECK(directory.status().message() == "cannot open " + dir.string() + ": is a directory");
}

}  // namespace
}  // namespace kestrel
