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

namespace {

// The CUDA ordinal of "cuda" / "cuda:N"; -1 for "cpu"; an error otherwise.
absl::StatusOr<int> CudaOrdinal(const std::string& device) {
  if (device == "cpu") return -1;
  if (device == "cuda") return 0;
  int ordinal = 0;
  if (!absl::StartsWith(device, "cuda:") || !absl::SimpleAtoi(device.substr(5), &ordinal) ||
      ordinal < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("device must be cpu, cuda or cuda:N, got \"", device, "\""));
  }
  return ordinal;
}

}  // namespace

absl::Status ValidateDeviceName(const std::string& device) {
  return CudaOrdinal(device).status();
}

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(const BackendOptions& options) {
  const std::string& device = options.device;
  absl::StatusOr<int> ordinal = CudaOrdinal(device);
  if (!ordinal.ok()) return ordinal.status();
  if (*ordinal < 0) return cpu::CreateCpuBackend({.num_threads = options.threads});
#ifdef KESTREL_HAVE_CUDA
  return cuda::CreateCudaBackend({.device = *ordinal});
#else
  return absl::UnavailableError(absl::StrCat(
      "device ", device, ": this binary was built without CUDA (build with --config=cuda)"));
#endif
}

}  // namespace kestrel::kernels
