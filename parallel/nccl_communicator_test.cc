// NcclCommunicator against the Communicator conformance tests. Built twice:
// `nccl_communicator_test` on the emulated NCCL (every size, in CI) and
// `nccl_communicator_test_gpu` on real NCCL (as many ranks as GPUs).
#include "parallel/nccl_communicator.h"

#include <cstdio>
#include <cstdlib>

#include <catch2/catch.hpp>

#include "parallel/communicator_conformance.h"

namespace kestrel::parallel {
namespace {

#ifdef KESTREL_CUDA_EMULATION
constexpr bool kEmulated = true;
#else
constexpr bool kEmulated = false;
#endif

// For the harness's copies, which run on rank threads (no Catch2 there).
void CheckCuda(cudaError_t error, const char* what) {
  if (error == cudaSuccess) return;
  std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(error));
  std::abort();
}

int DeviceCount() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) return 0;
  return count;
}

}  // namespace

const testing::CommunicatorHarness& testing::Harness() {
  static const CommunicatorHarness harness = {
      .create = [](int size, absl::Duration timeout) {
        NcclGroupOptions options{.size = size, .timeout = timeout};
        // The emulation has one device, shared by every rank.
        if (kEmulated) options.devices.assign(size, 0);
        return NcclCommunicator::CreateGroup(options);
      },
      .allocate = [](size_t bytes) -> void* {
        void* p = nullptr;
        return cudaMalloc(&p, bytes) == cudaSuccess ? p : nullptr;
      },
      .free = [](void* p) { (void)cudaFree(p); },
      .upload = [](void* device, const void* host, size_t bytes) {
        CheckCuda(cudaMemcpy(device, host, bytes, cudaMemcpyHostToDevice), "upload");
      },
      .download = [](void* host, const void* device, size_t bytes) {
        CheckCuda(cudaMemcpy(host, device, bytes, cudaMemcpyDeviceToHost), "download");
      },
      .max_size = kEmulated ? 4 : DeviceCount(),
      // The emulation sums in rank order; NCCL's rings and trees do not.
      .rank_order_sums = kEmulated,
      .half_sums_round_each_step = true,
      // The emulated collectives block inside NCCL (synchronous streams).
      .timeout_ends_wait = !kEmulated,
  };
  return harness;
}

namespace {

TEST_CASE("NcclCommunicator::CreateGroup checks its options") {
  auto zero = NcclCommunicator::CreateGroup({.size = 0});
  REQUIRE(absl::IsInvalidArgument(zero.status()));
  REQUIRE(zero.status().message() == "NCCL group size must be >= 1, got 0");
  auto devices = NcclCommunicator::CreateGroup({.size = 2, .devices = {0}});
  REQUIRE(absl::IsInvalidArgument(devices.status()));
  REQUIRE(devices.status().message() == "NcclGroupOptions.devices has 1 entries for 2 ranks");
  auto missing = NcclCommunicator::CreateGroup({.size = 1, .devices = {DeviceCount()}});
  REQUIRE(absl::IsInvalidArgument(missing.status()));
  REQUIRE(missing.status().message().find("rank 0's CUDA device must be in [0, ") !=
          std::string::npos);
}

TEST_CASE("NcclCommunicator orders collectives on a stream the caller gives") {
  cudaStream_t stream = nullptr;
  REQUIRE(cudaStreamCreate(&stream) == cudaSuccess);
  {
    auto group = NcclCommunicator::CreateGroup({.size = 1, .streams = {stream}});
    INFO(group.status().ToString());
    REQUIRE(group.ok());
    float* x = nullptr;
    REQUIRE(cudaMalloc(&x, sizeof(float)) == cudaSuccess);
    const float three = 3.0f;
    REQUIRE(cudaMemcpy(x, &three, sizeof three, cudaMemcpyHostToDevice) == cudaSuccess);
    REQUIRE((*group)[0]->AllReduceSum(x, x, 1, kernels::DType::kF32).ok());
    float out = 0.0f;
    REQUIRE(cudaMemcpy(&out, x, sizeof out, cudaMemcpyDeviceToHost) == cudaSuccess);
    REQUIRE(out == 3.0f);
    REQUIRE(cudaFree(x) == cudaSuccess);
  }
  // The group did not destroy the caller's stream.
  REQUIRE(cudaStreamDestroy(stream) == cudaSuccess);
}

}  // namespace
}  // namespace kestrel::parallel
