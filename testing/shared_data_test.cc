#include "testing/shared_data.h"

#include <cstdlib>
#include <fstream>

#include <catch2/catch.hpp>

namespace kestrel::testing {
namespace {

TEST_CASE("the shared folder holds the demo model and tokenizers") {
  KESTREL_SHARED_PATH_OR_SKIP(config, "models/stories260K/config.json");
  std::ifstream in(config);
  REQUIRE(in.good());
  KESTREL_SHARED_PATH_OR_SKIP(tokenizer, "tokenizers/llama3/tokenizer.json");
  CHECK(std::filesystem::file_size(tokenizer) > 0);
}

TEST_CASE("KESTREL_SHARED overrides the default location") {
  const char* old = std::getenv("KESTREL_SHARED");
  std::string saved = old ? old : "";
  setenv("KESTREL_SHARED", "/nonexistent/kestrel-shared", 1);
  CHECK_FALSE(FindSharedDir().has_value());
  if (old) {
    setenv("KESTREL_SHARED", saved.c_str(), 1);
  } else {
    unsetenv("KESTREL_SHARED");
  }
}

}  // namespace
}  // namespace kestrel::testing
