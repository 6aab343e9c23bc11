// Locates the shared, read-only test data (models, tokenizers, golden files)
// that lives beside the checkout in ../shared, or wherever $KESTREL_SHARED
// points. A user's fresh clone has no such folder: tests that need it are
// then reported as skipped, except under CI=true, where its absence fails.
#ifndef KESTREL_TESTING_SHARED_DATA_H_
#define KESTREL_TESTING_SHARED_DATA_H_

#include <filesystem>
#include <optional>
#include <string_view>

namespace kestrel::testing {

// The shared data folder: $KESTREL_SHARED if set, else `shared` beside the
// source checkout (found from this library's runfile, so it works inside
// Bazel's sandbox). nullopt when neither exists.
std::optional<std::filesystem::path> FindSharedDir();

// True when the CI environment variable is "true" (or "1").
bool RunningInCi();

// For use inside a Catch2 TEST_CASE: the path of `relative` inside the shared
// folder. When the folder or the entry is missing, under CI this FAILs the
// test; elsewhere it prints a "SKIPPED" warning and returns nullopt, and the
// caller returns (see KESTREL_SHARED_PATH_OR_SKIP).
std::optional<std::filesystem::path> SharedPathOrSkip(std::string_view relative);

}  // namespace kestrel::testing

// Declares `var` as the std::filesystem::path of `relative` inside the shared
// data folder, or returns from the enclosing test case (skipped or failed,
// see SharedPathOrSkip).
#define KESTREL_SHARED_PATH_OR_SKIP(var, relative)                          \
  const auto var##_or_skip = ::kestrel::testing::SharedPathOrSkip(relative); \
  if (!var##_or_skip) return;                                               \
  const std::filesystem::path& var = *var##_or_skip

#endif  // KESTREL_TESTING_SHARED_DATA_H_
