// The CUDA emulation itself: thread and block indices, shared memory with
// barriers, warp shuffles, and the checks that turn barrier or shuffle
// misuse into a failed launch instead of a wrong answer.
#include "kernels/cuda/emulation/cuda_emulation.h"

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cuda/cuda_compat.h"

namespace kestrel::cuda {
namespace {

using emulation::LastLaunchError;

__global__ void WriteIds(int* out) {
  const unsigned threads = blockDim.x * blockDim.y * blockDim.z;
  const unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  out[block * threads + thread] = static_cast<int>(block * 1000 + thread);
}

TEST_CASE("every thread of every block runs once with its own indices", "[cuda_emulation]") {
  const dim3 grid(3, 2, 2), block(4, 3, 2);
  std::vector<int> out(12 * 24, -1);
  REQUIRE(launch_kernel(WriteIds, grid, block, 0, nullptr, out.data()) == cudaSuccess);
  CHECK(LastLaunchError().empty());
  for (int b = 0; b < 12; ++b) {
    for (int t = 0; t < 24; ++t) CHECK(out[static_cast<size_t>(b * 24 + t)] == b * 1000 + t);
  }
}

// A tree reduction in shared memory: wrong without its barriers.
__global__ void BlockSum(const float* in, float* out) {
  __shared__ float partial[256];
  partial[threadIdx.x] = in[blockIdx.x * blockDim.x + threadIdx.x];
  __syncthreads();
  for (unsigned stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = partial[0];
}

TEST_CASE("shared memory and __syncthreads give a block reduction", "[cuda_emulation]") {
  std::vector<float> in(3 * 256), out(3, 0.0f);
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i % 7);
  REQUIRE(launch_kernel(BlockSum, dim3(3), dim3(256), 0, nullptr, in.data(), out.data()) ==
          cudaSuccess);
  for (int b = 0; b < 3; ++b) {
    float want = 0;
    for (int i = 0; i < 256; ++i) want += in[static_cast<size_t>(b * 256 + i)];
    CHECK(out[static_cast<size_t>(b)] == want);
  }
}

__global__ void WarpAllSum(const int* in, int* out) {
  int v = in[threadIdx.x];
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  out[threadIdx.x] = v;
}

TEST_CASE("__shfl_xor_sync butterflies give every lane its warp's sum", "[cuda_emulation]") {
  std::vector<int> in(64), out(64, 0);
  for (int i = 0; i < 64; ++i) in[static_cast<size_t>(i)] = i;
  REQUIRE(launch_kernel(WarpAllSum, dim3(1), dim3(64), 0, nullptr, in.data(), out.data()) ==
          cudaSuccess);
  for (int i = 0; i < 64; ++i) CHECK(out[static_cast<size_t>(i)] == (i < 32 ? 496 : 1520));
}

__global__ void SkipsBarrier(int* out) {
  if (threadIdx.x != 5) __syncthreads();
  out[threadIdx.x] = 1;
}

__global__ void TwoBarriers(int* out) {
  if (threadIdx.x % 2 == 0) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}

TEST_CASE("barrier misuse fails the launch and names the place", "[cuda_emulation]") {
  std::vector<int> out(64, 0);
  CHECK(launch_kernel(SkipsBarrier, dim3(1), dim3(64), 0, nullptr, out.data()) ==
        cudaErrorLaunchFailure);
  CHECK(LastLaunchError().find("__syncthreads divergence") != std::string::npos);
  CHECK(LastLaunchError().find("thread 5 (5,0,0) has left the kernel") != std::string::npos);
  CHECK(LastLaunchError().find("cuda_emulation_test.cc") != std::string::npos);

  CHECK(launch_kernel(TwoBarriers, dim3(2), dim3(32), 0, nullptr, out.data()) ==
        cudaErrorLaunchFailure);
  CHECK(LastLaunchError().find("__syncthreads divergence") != std::string::npos);

  // A good launch afterwards clears the message.
  std::vector<int> ids(4);
  CHECK(launch_kernel(WriteIds, dim3(1), dim3(4), 0, nullptr, ids.data()) == cudaSuccess);
  CHECK(LastLaunchError().empty());
}

TEST_CASE("a full-warp shuffle in a partial warp fails the launch", "[cuda_emulation]") {
  std::vector<int> in(48, 1), out(48, 0);
  CHECK(launch_kernel(WarpAllSum, dim3(1), dim3(48), 0, nullptr, in.data(), out.data()) ==
        cudaErrorLaunchFailure);
  CHECK(LastLaunchError().find("the mask names lanes absent from this warp of 16 lanes") !=
        std::string::npos);
}

TEST_CASE("launch configurations the emulation rejects", "[cuda_emulation]") {
  std::vector<int> out(2048);
  CHECK(launch_kernel(WriteIds, dim3(1), dim3(1025), 0, nullptr, out.data()) ==
        cudaErrorInvalidConfiguration);
  CHECK(LastLaunchError().find("1 to 1024 threads per block") != std::string::npos);
  CHECK(launch_kernel(WriteIds, dim3(0), dim3(32), 0, nullptr, out.data()) ==
        cudaErrorInvalidConfiguration);
  CHECK(std::string(cudaGetErrorString(cudaErrorLaunchFailure)) == "unspecified launch failure");
}

}  // namespace
}  // namespace kestrel::cuda
