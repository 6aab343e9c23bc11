#include "kernels/backends.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "kernels/cpu/cpu_backend.h"
#ifdef KESTREL_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

namespace kestrel::kernels {

bool BuildHasCuda() {
#ifdef KESTREL_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(const BackendOptions& options) {
  const std::string& device = options.device;
  if (device == "cpu") return cpu::CreateCpuBackend({.num_threads = options.threads});
  int ordinal = 0;
  if (device != "cuda") {
    if (!absl::StartsWith(device, "cuda:") ||
        !absl::SimpleAtoi(device.substr(5), &ordinal) || ordinal < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("device must be cpu, cuda or cuda:N, got \"", device, "\""));
    }
  }
#ifdef KESTREL_HAVE_CUDA
  return cuda::CreateCudaBackend({.device = ordinal});
#else
  return absl::UnavailableError(absl::StrCat(
      "device ", device, ": this binary was built without CUDA (build with --config=cuda)"));
#endif
}

}  // namespace kestrel::kernels
