#include "testing/shared_data.h"

#include <cstdlib>
#include <iostream>
#include <string>
#include <system_error>

#include <catch2/catch.hpp>

namespace kestrel::testing {
namespace {

namespace fs = std::filesystem;

std::optional<fs::path> ExistingDir(const fs::path& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return fs::canonical(path, ec);
  return std::nullopt;
}

// The checkout's root, from the anchor file this library ships as a runfile:
// Bazel's runfiles are symlinks that resolve into the source tree.
std::optional<fs::path> CheckoutRoot() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  if (srcdir != nullptr && workspace != nullptr) {
    fs::path anchor = fs::path(srcdir) / workspace / "testing/shared_data_anchor.txt";
    std::error_code ec;
    fs::path real = fs::canonical(anchor, ec);
    if (!ec) return real.parent_path().parent_path();
  }
  // Outside Bazel: walk up from the working directory to the checkout root.
  std::error_code ec;
  for (fs::path dir = fs::current_path(ec); !ec && !dir.empty(); dir = dir.parent_path()) {
    if (fs::exists(dir / "testing/shared_data_anchor.txt", ec)) return dir;
    if (dir == dir.parent_path()) break;
  }
  return std::nullopt;
}

}  // namespace

std::optional<fs::path> FindSharedDir() {
  if (const char* env = std::getenv("KESTREL_SHARED"); env != nullptr && *env != '\0') {
    return ExistingDir(env);
  }
  if (auto root = CheckoutRoot()) return ExistingDir(root->parent_path() / "shared");
  return std::nullopt;
}

bool RunningInCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && (std::string(ci) == "true" || std::string(ci) == "1");
}

std::optional<fs::path> SharedPathOrSkip(std::string_view relative) {
  std::string problem;
  std::optional<fs::path> dir = FindSharedDir();
  if (!dir) {
    problem = "shared test data not found (set KESTREL_SHARED or put it in ../shared)";
  } else {
    fs::path path = *dir / fs::path(relative);
    std::error_code ec;
    if (fs::exists(path, ec)) return path;
    problem = "shared test data has no " + path.string();
  }
  if (RunningInCi()) {
    FAIL(problem << "; under CI=true this is a failure");
  } else {
    WARN("SKIPPED: " << problem);
    std::cerr << "KESTREL-SKIPPED: " << problem << "\n";
  }
  return std::nullopt;
}

}  // namespace kestrel::testing
