// Creating a backend by name, for the binaries' --device flag: "cpu", or
// "cuda" / "cuda:N" when the build has CUDA (bazel --config=cuda). A CUDA
// name in a build without it, or on a machine without a usable GPU, is a
// clear error, never a silent fall back to the CPU.
//
//   ASSIGN_OR_RETURN(auto backend, kernels::CreateBackend({.device = "cuda:0"}));
#ifndef KESTREL_KERNELS_BACKENDS_H_
#define KESTREL_KERNELS_BACKENDS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace kestrel::kernels {

struct BackendOptions {
  // "cpu", "cuda" (device 0) or "cuda:N".
  std::string device = "cpu";
  // CPU: threads running the kernels, including the caller; 0 = one per CPU.
  int threads = 0;
};

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(const BackendOptions& options);

// Checks a device name without creating anything (for flag checks):
// "cpu", "cuda" or "cuda:N" with N >= 0.
absl::Status ValidateDeviceName(const std::string& device);

// Whether this binary was built with the CUDA backend.
bool BuildHasCuda();

}  // namespace kestrel::kernels

#endif  // KESTREL_KERNELS_BACKENDS_H_
