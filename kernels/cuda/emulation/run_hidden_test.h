// For the emulation's sanitizer probes: runs this test binary again with a
// hidden Catch2 tag (a test meant to make ASan or TSan report and exit
// non-zero) and returns its exit status and combined output.
#ifndef KESTREL_KERNELS_CUDA_EMULATION_RUN_HIDDEN_TEST_H_
#define KESTREL_KERNELS_CUDA_EMULATION_RUN_HIDDEN_TEST_H_

#include <unistd.h>

#include <cstdio>
#include <string>

namespace kestrel::cuda::testing {

struct ChildResult {
  int status = -1;  // as pclose() returns it; -1 if the child did not start
  std::string output;
};

inline ChildResult RunHiddenTest(const std::string& tag) {
  ChildResult result;
  char self[4096] = {};
  if (readlink("/proc/self/exe", self, sizeof self - 1) <= 0) return result;
  const std::string command = std::string("'") + self + "' '" + tag + "' 2>&1";
  FILE* child = popen(command.c_str(), "r");
  if (child == nullptr) return result;
  char buffer[4096];
  for (size_t n; (n = fread(buffer, 1, sizeof buffer, child)) > 0;) result.output.append(buffer, n);
  result.status = pclose(child);
  return result;
}

}  // namespace kestrel::cuda::testing

#endif  // KESTREL_KERNELS_CUDA_EMULATION_RUN_HIDDEN_TEST_H_
