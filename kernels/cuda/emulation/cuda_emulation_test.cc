// The CUDA emulation's execution model: indices, shared memory and
// barriers, every warp primitive (with partial masks and widths), atomics,
// run orders, poisoning, and the checks that turn barrier or warp misuse
// into a failed launch naming file:line instead of a hang or a wrong answer.
#include "kernels/cuda/emulation/cuda_emulation.h"

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cuda/cuda_compat.h"
#include "kernels/cuda/device_error.h"
#include "kernels/cuda/emulation/emulation_test_kernels.h"
#include "kernels/cuda/emulation/fiber.h"
#include "kernels/cuda/emulation/run_hidden_test.h"

namespace kestrel::cuda {
namespace {

using emulation::LastLaunchError;
using emulation::RunOrder;

constexpr RunOrder kOrders[] = {RunOrder::kForward, RunOrder::kReverse, RunOrder::kRandom};

// Restores the run order the environment chose when a test ends.
class OrderScope {
 public:
  explicit OrderScope(RunOrder order, uint64_t seed = 7) : saved_(emulation::GetRunOrder()) {
    emulation::SetRunOrder(order, seed);
  }
  ~OrderScope() { emulation::SetRunOrder(saved_); }

 private:
  RunOrder saved_;
};

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

__global__ void WriteIds(int* out) {
  const unsigned threads = blockDim.x * blockDim.y * blockDim.z;
  const unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  out[block * threads + thread] = static_cast<int>(block * 1000 + thread);
}

TEST_CASE("every thread of every block runs once with its own indices", "[cuda_emulation]") {
  const dim3 grid(3, 2, 2), block(4, 3, 2);
  std::vector<int> out(12 * 24, -1);
  for (RunOrder order : kOrders) {
    OrderScope scope(order);
    std::fill(out.begin(), out.end(), -1);
    REQUIRE(launch_kernel(WriteIds, grid, block, 0, nullptr, out.data()) == cudaSuccess);
    CHECK(LastLaunchError().empty());
    for (int b = 0; b < 12; ++b) {
      for (int t = 0; t < 24; ++t) CHECK(out[static_cast<size_t>(b * 24 + t)] == b * 1000 + t);
    }
  }
}

TEST_CASE("a block may have 1024 threads", "[cuda_emulation]") {
#if defined(__SANITIZE_THREAD__)
  SUCCEED("skipped under ThreadSanitizer: a 1024-fiber block costs it seconds");
  return;
#endif
  std::vector<int> out(2 * 1024, -1);
  REQUIRE(launch_kernel(WriteIds, dim3(2), dim3(32, 32), 0, nullptr, out.data()) == cudaSuccess);
  for (int b = 0; b < 2; ++b) {
    for (int t = 0; t < 1024; ++t) CHECK(out[static_cast<size_t>(b * 1024 + t)] == b * 1000 + t);
  }
}

// Each thread takes a ticket when it starts: the run order, observed.
__global__ void TakeTickets(int* counter, int* tickets) {
  const unsigned block = blockIdx.x;
  const int ticket = atomicAdd(counter, 1);
  tickets[block * blockDim.x + threadIdx.x] = ticket;
}

TEST_CASE("the run order decides which thread and which block runs first", "[cuda_emulation]") {
  constexpr int kBlocks = 4, kThreads = 64;
  auto run = [](RunOrder order, uint64_t seed) {
    OrderScope scope(order, seed);
    int counter = 0;
    std::vector<int> tickets(kBlocks * kThreads, -1);
    REQUIRE(launch_kernel(TakeTickets, dim3(kBlocks), dim3(kThreads), 0, nullptr, &counter,
                          tickets.data()) == cudaSuccess);
    return tickets;
  };
  const std::vector<int> forward = run(RunOrder::kForward, 1);
  const std::vector<int> reverse = run(RunOrder::kReverse, 1);
  for (int i = 0; i < kBlocks * kThreads; ++i) {
    CHECK(forward[static_cast<size_t>(i)] == i);
    CHECK(reverse[static_cast<size_t>(i)] == kBlocks * kThreads - 1 - i);
  }
  const std::vector<int> random = run(RunOrder::kRandom, 11);
  CHECK(random != forward);
  CHECK(random != reverse);
  CHECK(run(RunOrder::kRandom, 11) == random);  // seeded: reproducible
  CHECK(run(RunOrder::kRandom, 12) != random);
  std::vector<int> sorted = random;
  std::sort(sorted.begin(), sorted.end());
  CHECK(sorted == forward);  // a permutation: every thread ran once
}

TEST_CASE("shared memory and __syncthreads give a block reduction in every order",
          "[cuda_emulation]") {
  std::vector<float> in(5 * 256), out(5, 0.0f);
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i % 7);
  for (RunOrder order : kOrders) {
    OrderScope scope(order);
    REQUIRE(testing::BlockSums(in.data(), out.data(), 5, false, nullptr) == cudaSuccess);
    for (int b = 0; b < 5; ++b) {
      float want = 0;
      for (int i = 0; i < 256; ++i) want += in[static_cast<size_t>(b * 256 + i)];
      CHECK(out[static_cast<size_t>(b)] == want);
    }
  }
}

TEST_CASE("a missing __syncthreads gives a wrong sum in at least one run order",
          "[cuda_emulation]") {
#if defined(__SANITIZE_THREAD__)
  // ThreadSanitizer reports the race this kernel has (and halts): good, but
  // not in this test.
  SUCCEED("skipped under ThreadSanitizer, which reports the missing barrier's race");
  return;
#endif
  std::vector<float> in(8 * 256), out(8, 0.0f);
  for (size_t i = 0; i < in.size(); ++i) in[i] = 1.0f + static_cast<float>(i % 5);
  int wrong_orders = 0;
  for (RunOrder order : kOrders) {
    OrderScope scope(order);
    REQUIRE(testing::BlockSums(in.data(), out.data(), 8, true, nullptr) == cudaSuccess);
    bool wrong = false;
    for (int b = 0; b < 8; ++b) {
      float want = 0;
      for (int i = 0; i < 256; ++i) want += in[static_cast<size_t>(b * 256 + i)];
      wrong |= out[static_cast<size_t>(b)] != want;
    }
    INFO(emulation::RunOrderName(order) << (wrong ? " wrong" : " right"));
    wrong_orders += wrong ? 1 : 0;
  }
  CHECK(wrong_orders >= 1);
}

// ThreadSanitizer sees races between emulated threads: a hidden test runs
// the kernel with the missing barrier, and under TSan the visible one runs
// that test in a child process and expects TSan's report.
TEST_CASE("racy kernel for the ThreadSanitizer probe", "[.race_probe]") {
  std::vector<float> in(256, 1.0f), out(1, 0.0f);
  OrderScope scope(RunOrder::kForward);
  REQUIRE(testing::BlockSums(in.data(), out.data(), 1, true, nullptr) == cudaSuccess);
}

TEST_CASE("ThreadSanitizer reports a missing __syncthreads between emulated threads",
          "[cuda_emulation]") {
#if !defined(__SANITIZE_THREAD__)
  SUCCEED("only under ThreadSanitizer");
#else
  const testing::ChildResult child = testing::RunHiddenTest("[.race_probe]");
  INFO(child.output);
  CHECK(child.status != 0);
  CHECK(Contains(child.output, "ThreadSanitizer: data race"));
  CHECK(Contains(child.output, "emulation_test_kernels.cu"));
#endif
}

__global__ void WritePastDynamicShared(int words) {
  KESTREL_DYNAMIC_SHARED(int, smem);
  const int index = threadIdx.x == 15 ? words : static_cast<int>(threadIdx.x);  // one past the end
  smem[index] = 1;
}

TEST_CASE("dynamic shared memory overflow for the AddressSanitizer probe", "[.overflow_probe]") {
  CHECK(launch_kernel(WritePastDynamicShared, dim3(1), dim3(16), 16 * 64 * sizeof(int), nullptr,
                      16 * 64) == cudaSuccess);
}

TEST_CASE("AddressSanitizer reports a write past the dynamic shared memory", "[cuda_emulation]") {
#if !defined(__SANITIZE_ADDRESS__)
  SUCCEED("only under AddressSanitizer");
#else
  const testing::ChildResult child = testing::RunHiddenTest("[.overflow_probe]");
  INFO(child.output);
  CHECK(child.status != 0);
  CHECK(Contains(child.output, "heap-buffer-overflow"));
  CHECK(Contains(child.output, "WritePastDynamicShared"));
#endif
}

// Lanes exchange through shared memory, ordered by __syncwarp only: correct
// on a GPU, and TSan must see the warp barrier as the ordering.
__global__ void ExchangeThroughShared(int* out) {
  __shared__ int slots[64];
  slots[threadIdx.x] = static_cast<int>(threadIdx.x) * 3;
  __syncwarp();
  out[threadIdx.x] = slots[threadIdx.x ^ 1];
  __syncwarp();
  slots[threadIdx.x] = 0;
}

TEST_CASE("__syncwarp orders shared memory between the lanes of a warp", "[cuda_emulation]") {
  std::vector<int> out(64, -1);
  REQUIRE(launch_kernel(ExchangeThroughShared, dim3(2), dim3(64), 0, nullptr, out.data()) ==
          cudaSuccess);
  for (int i = 0; i < 64; ++i) CHECK(out[static_cast<size_t>(i)] == (i ^ 1) * 3);
}

TEST_CASE("static __shared__ variables in .cu files read NaN bytes at the start of every block",
          "[cuda_emulation]") {
  std::vector<unsigned> out(4 * 64, 0);
  REQUIRE(testing::ProbeStaticShared(out.data(), 4, nullptr) == cudaSuccess);
  for (unsigned v : out) REQUIRE(v == 0xffffffffu);
}

__global__ void ProbeDynamicShared(unsigned* out, int words) {
  KESTREL_DYNAMIC_SHARED(unsigned, smem);
  if (threadIdx.x == 0) {
    unsigned all_ones = 1;
    for (int i = 0; i < words; ++i) all_ones &= smem[i] == 0xffffffffu ? 1u : 0u;
    out[2 * blockIdx.x] = all_ones;
    out[2 * blockIdx.x + 1] = static_cast<unsigned>(reinterpret_cast<uintptr_t>(smem) % 16);
  }
  __syncthreads();
  for (int i = threadIdx.x; i < words; i += blockDim.x) smem[i] = blockIdx.x;
}

TEST_CASE("dynamic shared memory is aligned and NaN-filled before every block",
          "[cuda_emulation]") {
  std::vector<unsigned> out(6, 7);
  REQUIRE(launch_kernel(ProbeDynamicShared, dim3(3), dim3(64), 1000 * sizeof(unsigned), nullptr,
                        out.data(), 1000) == cudaSuccess);
  CHECK(out == std::vector<unsigned>{1, 0, 1, 0, 1, 0});
  const float nan_bits = __uint_as_float(0xffffffffu);
  CHECK(std::isnan(nan_bits));
  CHECK(std::isnan(__bfloat162float(__ushort_as_bfloat16(0xffff))));
  CHECK(std::isnan(__half2float(__ushort_as_half(0xffff))));
}

TEST_CASE("more than 48 KiB of dynamic shared memory needs cudaFuncSetAttribute",
          "[cuda_emulation]") {
  constexpr int kWords = 60 * 1024 / 4;
  std::vector<unsigned> out(2);
  CHECK(launch_kernel(ProbeDynamicShared, dim3(1), dim3(32), kWords * 4, nullptr, out.data(),
                      kWords) == cudaErrorInvalidValue);
  CHECK(Contains(LastLaunchError(), "cudaFuncSetAttribute"));
  CHECK(cudaFuncSetAttribute(ProbeDynamicShared, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             228 * 1024) == cudaErrorInvalidValue);
  CHECK(cudaGetLastError() == cudaErrorInvalidValue);
  REQUIRE(cudaFuncSetAttribute(ProbeDynamicShared, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               kWords * 4) == cudaSuccess);
  CHECK(launch_kernel(ProbeDynamicShared, dim3(1), dim3(32), kWords * 4, nullptr, out.data(),
                      kWords) == cudaSuccess);
  CHECK(out[0] == 1);
  CHECK(launch_kernel(ProbeDynamicShared, dim3(1), dim3(32), kWords * 4 + 4, nullptr,
                      out.data(), kWords) == cudaErrorInvalidValue);
  int optin = 0;
  REQUIRE(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0) ==
          cudaSuccess);
  CHECK(optin == 227 * 1024);
}

// Lane l of each warp contributes v = base + l; each shuffle variant's
// result is written per lane.
__global__ void Shuffles(const int* in, int* out, int width) {
  const int v = in[threadIdx.x];
  const int n = blockDim.x;
  int* o = out + threadIdx.x;
  o[0 * n] = __shfl_sync(0xffffffffu, v, 5, width);
  o[1 * n] = __shfl_up_sync(0xffffffffu, v, 3, width);
  o[2 * n] = __shfl_down_sync(0xffffffffu, v, 3, width);
  o[3 * n] = __shfl_xor_sync(0xffffffffu, v, 6, width);
  o[4 * n] = __shfl_sync(0xffffffffu, v, 37);  // srcLane wraps modulo the width (32)
}

TEST_CASE("shuffles follow CUDA's lane arithmetic for every width", "[cuda_emulation]") {
  constexpr int kThreads = 64;
  std::vector<int> in(kThreads);
  for (int i = 0; i < kThreads; ++i) in[static_cast<size_t>(i)] = 100 * i + 1;
  for (int width : {32, 16, 8, 4, 2, 1}) {
    INFO("width " << width);
    std::vector<int> out(5 * kThreads, 0);
    REQUIRE(launch_kernel(Shuffles, dim3(1), dim3(kThreads), 0, nullptr, in.data(), out.data(),
                          width) == cudaSuccess);
    for (int t = 0; t < kThreads; ++t) {
      const int lane = t % 32, warp_base = t - lane;
      const int segment = lane / width * width, index = lane % width;
      auto value = [&](int source_lane) { return in[static_cast<size_t>(warp_base + source_lane)]; };
      CHECK(out[static_cast<size_t>(0 * kThreads + t)] == value(segment + 5 % width));
      CHECK(out[static_cast<size_t>(1 * kThreads + t)] == value(index >= 3 ? lane - 3 : lane));
      CHECK(out[static_cast<size_t>(2 * kThreads + t)] ==
            value(index + 3 < width ? lane + 3 : lane));
      const int xor_source = lane ^ 6;
      CHECK(out[static_cast<size_t>(3 * kThreads + t)] ==
            value(xor_source < segment + width ? xor_source : lane));
      CHECK(out[static_cast<size_t>(4 * kThreads + t)] == value(5));
    }
  }
}

template <typename T>
__global__ void ShuffleType(const T* in, T* out) {
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, in[threadIdx.x], 1);
}

TEST_CASE("shuffles move 2-, 4- and 8-byte types bit for bit", "[cuda_emulation]") {
  std::vector<double> d_in(32), d_out(32);
  std::vector<__nv_bfloat16> b_in(32), b_out(32);
  std::vector<long long> l_in(32), l_out(32);
  for (int i = 0; i < 32; ++i) {
    d_in[static_cast<size_t>(i)] = 1.0 / (i + 3);
    b_in[static_cast<size_t>(i)] = __float2bfloat16(static_cast<float>(i) * 0.37f);
    l_in[static_cast<size_t>(i)] = (1ll << 40) + i;
  }
  REQUIRE(launch_kernel(ShuffleType<double>, dim3(1), dim3(32), 0, nullptr, d_in.data(),
                        d_out.data()) == cudaSuccess);
  REQUIRE(launch_kernel(ShuffleType<__nv_bfloat16>, dim3(1), dim3(32), 0, nullptr, b_in.data(),
                        b_out.data()) == cudaSuccess);
  REQUIRE(launch_kernel(ShuffleType<long long>, dim3(1), dim3(32), 0, nullptr, l_in.data(),
                        l_out.data()) == cudaSuccess);
  for (size_t i = 0; i < 32; ++i) {
    CHECK(d_out[i] == d_in[i ^ 1]);
    CHECK(b_out[i].__x == b_in[i ^ 1].__x);
    CHECK(l_out[i] == l_in[i ^ 1]);
  }
}

// The low half-warp reduces with mask 0xffff while the high half, at other
// lines, uses its own mask: partial masks and diverged halves.
__global__ void HalfWarpSums(const int* in, int* out) {
  const int lane = threadIdx.x % 32;
  int v = in[threadIdx.x];
  if (lane < 16) {
    for (int offset = 8; offset > 0; offset /= 2) v += __shfl_xor_sync(0x0000ffffu, v, offset);
    __syncwarp(0x0000ffffu);
  } else {
    for (int offset = 1; offset < 16; offset *= 2) v += __shfl_xor_sync(0xffff0000u, v, offset);
  }
  __syncwarp();
  out[threadIdx.x] = v;
}

TEST_CASE("partial masks: two half-warps reduce independently", "[cuda_emulation]") {
  std::vector<int> in(64), out(64, 0);
  for (int i = 0; i < 64; ++i) in[static_cast<size_t>(i)] = i;
  for (RunOrder order : kOrders) {
    OrderScope scope(order);
    REQUIRE(launch_kernel(HalfWarpSums, dim3(1), dim3(64), 0, nullptr, in.data(), out.data()) ==
            cudaSuccess);
    for (int i = 0; i < 64; ++i) {
      const int first = i / 16 * 16;
      CHECK(out[static_cast<size_t>(i)] == 16 * first + 120);
    }
  }
}

// A partial warp (48 threads: the second warp has 16 lanes) with a mask
// naming exactly its lanes.
__global__ void PartialWarpSum(const int* in, int* out) {
  const unsigned mask = threadIdx.x < 32 ? 0xffffffffu : 0x0000ffffu;
  int v = in[threadIdx.x];
  for (int offset = 1; offset < (threadIdx.x < 32 ? 32 : 16); offset *= 2) {
    v += __shfl_xor_sync(mask, v, offset);
  }
  out[threadIdx.x] = v;
}

TEST_CASE("a partial last warp shuffles with a mask of its lanes", "[cuda_emulation]") {
  std::vector<int> in(48, 1), out(48, 0);
  REQUIRE(launch_kernel(PartialWarpSum, dim3(1), dim3(48), 0, nullptr, in.data(), out.data()) ==
          cudaSuccess);
  for (int i = 0; i < 48; ++i) CHECK(out[static_cast<size_t>(i)] == (i < 32 ? 32 : 16));
}

// A lane outside the mask is undefined on the GPU: the emulation returns
// NaN bits so a result that depends on it shows.
__global__ void DownOutsideMask(const float* in, float* out) {
  if (threadIdx.x < 16) out[threadIdx.x] = __shfl_down_sync(0xffffu, in[threadIdx.x], 8);
}

TEST_CASE("a shuffle reading a lane outside its mask gets NaN", "[cuda_emulation]") {
  std::vector<float> in(32, 2.0f), out(32, 0.0f);
  REQUIRE(launch_kernel(DownOutsideMask, dim3(1), dim3(32), 0, nullptr, in.data(), out.data()) ==
          cudaSuccess);
  for (int i = 0; i < 8; ++i) CHECK(out[static_cast<size_t>(i)] == 2.0f);
  for (int i = 8; i < 16; ++i) CHECK(std::isnan(out[static_cast<size_t>(i)]));
}

__global__ void Votes(const int* in, unsigned* out) {
  const int lane = threadIdx.x % 32;
  const bool p = in[threadIdx.x] != 0;
  unsigned* o = out + 4 * threadIdx.x;
  o[0] = __ballot_sync(0xffffffffu, p);
  o[1] = static_cast<unsigned>(__any_sync(0xffffffffu, p));
  o[2] = static_cast<unsigned>(__all_sync(0xffffffffu, p));
  if (lane >= 8) {
    o[3] = __ballot_sync(0xffffff00u, p);
  } else {
    o[3] = static_cast<unsigned>(__all_sync(0x000000ffu, p));
  }
}

TEST_CASE("ballot, any and all over full and partial masks", "[cuda_emulation]") {
  std::vector<int> in(64, 0);
  for (int i = 0; i < 32; ++i) in[static_cast<size_t>(i)] = (i % 3 == 0) ? 1 : 0;  // warp 0: mixed
  for (int i = 32; i < 64; ++i) in[static_cast<size_t>(i)] = 1;                      // warp 1: all
  std::vector<unsigned> out(4 * 64, 7);
  REQUIRE(launch_kernel(Votes, dim3(1), dim3(64), 0, nullptr, in.data(), out.data()) ==
          cudaSuccess);
  unsigned want0 = 0;
  for (int i = 0; i < 32; ++i) want0 |= (i % 3 == 0 ? 1u : 0u) << i;
  for (int t = 0; t < 64; ++t) {
    const unsigned* o = out.data() + 4 * t;
    const int lane = t % 32;
    if (t < 32) {
      CHECK(o[0] == want0);
      CHECK(o[1] == 1);
      CHECK(o[2] == 0);
      CHECK(o[3] == (lane >= 8 ? (want0 & 0xffffff00u) : 0u));
    } else {
      CHECK(o[0] == 0xffffffffu);
      CHECK(o[1] == 1);
      CHECK(o[2] == 1);
      CHECK(o[3] == (lane >= 8 ? 0xffffff00u : 1u));
    }
  }
}

__global__ void Atomics(int* ints, unsigned* uints, float* floats, unsigned long long* ulls) {
  const int t = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  atomicAdd(&ints[0], 1);
  atomicMax(&ints[1], t);
  atomicMin(&ints[2], -t);
  atomicAdd(&uints[0], 2u);
  atomicAdd(&floats[0], 0.5f);
  atomicAdd(&ulls[0], 3ull);
  // One winner takes the slot; everyone swaps in its id.
  if (atomicCAS(&ints[3], -1, t) == -1) atomicAdd(&ints[4], 1);
  atomicExch(&uints[1], static_cast<unsigned>(t));
  atomicCAS(&ulls[1], 0ull, 42ull);
  atomicCAS(&uints[2], 0u, 9u);
}

TEST_CASE("atomics are read-modify-write across threads and blocks", "[cuda_emulation]") {
  std::vector<int> ints = {0, -1, 0, -1, 0};
  std::vector<unsigned> uints = {0, 0, 0};
  std::vector<float> floats = {0.0f};
  std::vector<unsigned long long> ulls = {0, 0};
  REQUIRE(launch_kernel(Atomics, dim3(3), dim3(96), 0, nullptr, ints.data(), uints.data(),
                        floats.data(), ulls.data()) == cudaSuccess);
  CHECK(ints[0] == 288);
  CHECK(ints[1] == 287);
  CHECK(ints[2] == -287);
  CHECK(ints[3] >= 0);
  CHECK(ints[4] == 1);
  CHECK(uints[0] == 576);
  CHECK(uints[1] < 288);
  CHECK(uints[2] == 9);
  CHECK(floats[0] == 144.0f);
  CHECK(ulls[0] == 864);
  CHECK(ulls[1] == 42);
}

__global__ void ReportBadIds(const int* ids, int n, int limit, DeviceError* error) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n && (ids[i] < 0 || ids[i] >= limit)) {
    ReportDeviceError(error, DeviceErrorCode::kTokenId, i, ids[i], limit);
  }
}

TEST_CASE("device_error.h keeps exactly one report from many threads", "[cuda_emulation]") {
  std::vector<int> ids(200, 3);
  ids[17] = -1;
  ids[150] = 99;
  DeviceError* error = nullptr;
  int* d_ids = nullptr;
  REQUIRE(cudaMalloc(&error, sizeof(DeviceError)) == cudaSuccess);
  REQUIRE(cudaMalloc(&d_ids, ids.size() * sizeof(int)) == cudaSuccess);
  REQUIRE(cudaMemset(error, 0, sizeof(DeviceError)) == cudaSuccess);
  REQUIRE(cudaMemcpy(d_ids, ids.data(), ids.size() * sizeof(int), cudaMemcpyHostToDevice) ==
          cudaSuccess);
  for (RunOrder order : kOrders) {
    OrderScope scope(order);
    REQUIRE(cudaMemset(error, 0, sizeof(DeviceError)) == cudaSuccess);
    REQUIRE(launch_kernel(ReportBadIds, dim3(4), dim3(64), 0, nullptr, d_ids, 200, 10, error) ==
            cudaSuccess);
    DeviceError got;
    REQUIRE(cudaMemcpy(&got, error, sizeof got, cudaMemcpyDeviceToHost) == cudaSuccess);
    CHECK(got.code == static_cast<int32_t>(DeviceErrorCode::kTokenId));
    CHECK(((got.index == 17 && got.value == -1) || (got.index == 150 && got.value == 99)));
    CHECK(got.limit == 10);
  }
  CHECK(cudaFree(error) == cudaSuccess);
  CHECK(cudaFree(d_ids) == cudaSuccess);
}

// ---------------------------------------------------------------------------
// Misuse: every case fails the launch with file:line, and later launches work.

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

__global__ void ShuffleAfterLaneLeft(int* out) {
  if (threadIdx.x == 3) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, static_cast<int>(threadIdx.x), 1);
}

__global__ void ShuffleWhileLaneAtBarrier(int* out) {
  if (threadIdx.x == 7) {
    __syncthreads();
  } else {
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, static_cast<int>(threadIdx.x), 1);
    __syncthreads();
  }
}

__global__ void MaskWithoutSelf(int* out) {
  out[threadIdx.x] = __shfl_xor_sync(0xfffffffeu, static_cast<int>(threadIdx.x), 1);
}

__global__ void MismatchedMasks(int* out) {
  const unsigned mask = threadIdx.x == 0 ? 0x0000ffffu : 0xffffffffu;
  __syncwarp(mask);
  out[threadIdx.x] = 1;
}

__global__ void BadWidth(int* out) {
  out[threadIdx.x] = __shfl_sync(0xffffffffu, 1, 0, 12);
}

TEST_CASE("barrier and warp misuse fail the launch with file:line and never hang",
          "[cuda_emulation]") {
  std::vector<int> out(64, 0);
  for (RunOrder order : kOrders) {
    OrderScope scope(order);
    INFO(emulation::RunOrderName(order));
    CHECK(launch_kernel(SkipsBarrier, dim3(2), dim3(64), 0, nullptr, out.data()) ==
          cudaErrorLaunchFailure);
    CHECK(Contains(LastLaunchError(), "__syncthreads divergence"));
    CHECK(Contains(LastLaunchError(), "thread 5 (5,0,0) has left the kernel"));
    CHECK(Contains(LastLaunchError(), "cuda_emulation_test.cc:"));
    // launch_kernel consumed the error, as cudaGetLastError() after <<<>>>.
    CHECK(cudaPeekAtLastError() == cudaSuccess);

    CHECK(launch_kernel(TwoBarriers, dim3(2), dim3(32), 0, nullptr, out.data()) ==
          cudaErrorLaunchFailure);
    CHECK(Contains(LastLaunchError(), "__syncthreads divergence"));

    CHECK(launch_kernel(ShuffleAfterLaneLeft, dim3(1), dim3(32), 0, nullptr, out.data()) ==
          cudaErrorLaunchFailure);
    CHECK(Contains(LastLaunchError(), "lane 3 has left the kernel"));
    CHECK(Contains(LastLaunchError(), "__shfl_xor_sync at kernels/cuda/emulation/"));

    CHECK(launch_kernel(ShuffleWhileLaneAtBarrier, dim3(1), dim3(32), 0, nullptr, out.data()) ==
          cudaErrorLaunchFailure);
    CHECK(Contains(LastLaunchError(), "lane 7 waits at __syncthreads"));

    CHECK(launch_kernel(MaskWithoutSelf, dim3(1), dim3(32), 0, nullptr, out.data()) ==
          cudaErrorLaunchFailure);
    CHECK(Contains(LastLaunchError(), "does not name the calling lane 0"));

    CHECK(launch_kernel(MismatchedMasks, dim3(1), dim3(32), 0, nullptr, out.data()) ==
          cudaErrorLaunchFailure);
    CHECK(Contains(LastLaunchError(), "with mask 0xffffffff"));

    CHECK(launch_kernel(BadWidth, dim3(1), dim3(32), 0, nullptr, out.data()) ==
          cudaErrorLaunchFailure);
    CHECK(Contains(LastLaunchError(), "width 12"));
  }

  // A full-warp mask in a 16-lane warp names absent lanes.
  std::vector<int> in(48, 1);
  CHECK(launch_kernel(ShuffleType<int>, dim3(1), dim3(48), 0, nullptr, in.data(), out.data()) ==
        cudaErrorLaunchFailure);
  CHECK(Contains(LastLaunchError(), "the mask names lanes absent from this warp of 16 lanes"));

  // The unwound fibers are reusable: a good launch afterwards clears the
  // message.
  std::vector<int> ids(4);
  CHECK(launch_kernel(WriteIds, dim3(1), dim3(4), 0, nullptr, ids.data()) == cudaSuccess);
  CHECK(LastLaunchError().empty());
}

TEST_CASE("launch configurations a GPU rejects", "[cuda_emulation]") {
  std::vector<int> out(2048);
  CHECK(launch_kernel(WriteIds, dim3(1), dim3(1025), 0, nullptr, out.data()) ==
        cudaErrorInvalidConfiguration);
  CHECK(Contains(LastLaunchError(), "1 to 1024 threads per block"));
  CHECK(launch_kernel(WriteIds, dim3(0), dim3(32), 0, nullptr, out.data()) ==
        cudaErrorInvalidConfiguration);
  CHECK(launch_kernel(WriteIds, dim3(1), dim3(1, 1, 65), 0, nullptr, out.data()) ==
        cudaErrorInvalidConfiguration);
  CHECK(launch_kernel(WriteIds, dim3(1, 65536), dim3(1), 0, nullptr, out.data()) ==
        cudaErrorInvalidConfiguration);
  CHECK(std::string(cudaGetErrorString(cudaErrorLaunchFailure)) == "unspecified launch failure");
}

__global__ void BlockSumOfInts(const int* in, int* out) {
  __shared__ int partial[128];
  partial[threadIdx.x] = in[blockIdx.x * 128 + threadIdx.x];
  __syncthreads();
  for (int stride = 64; stride > 0; stride /= 2) {
    if (static_cast<int>(threadIdx.x) < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = partial[0];
}

TEST_CASE("host threads may launch concurrently", "[cuda_emulation]") {
#if defined(__SANITIZE_THREAD__)
  constexpr int kHostThreads = 2, kBlocks = 2, kRounds = 2;  // TSan: fibers are costly
#else
  constexpr int kHostThreads = 4, kBlocks = 3, kRounds = 10;
#endif
  std::vector<std::thread> threads;
  std::vector<int> failures(kHostThreads, 0);
  for (int h = 0; h < kHostThreads; ++h) {
    threads.emplace_back([h, &failures, kBlocks, kRounds] {
      std::vector<int> in(kBlocks * 128), out(kBlocks);
      for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<int>(i) + h;
      for (int round = 0; round < kRounds; ++round) {
        if (launch_kernel(BlockSumOfInts, dim3(kBlocks), dim3(128), 0, nullptr, in.data(),
                          out.data()) != cudaSuccess) {
          ++failures[static_cast<size_t>(h)];
        }
        for (int b = 0; b < kBlocks; ++b) {
          int want = 0;
          for (int i = 0; i < 128; ++i) want += in[static_cast<size_t>(b * 128 + i)];
          if (out[static_cast<size_t>(b)] != want) ++failures[static_cast<size_t>(h)];
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  CHECK(failures == std::vector<int>(kHostThreads, 0));
}

// ---------------------------------------------------------------------------
// Cost.

__global__ void TenBarriers(int* out) {
  __shared__ int slots[256];
  int v = static_cast<int>(threadIdx.x);
  for (int i = 0; i < 10; ++i) {
    slots[threadIdx.x] = v;
    __syncthreads();
    v += slots[(threadIdx.x + 1) % blockDim.x];
    __syncthreads();
  }
  out[threadIdx.x] = v;
}

TEST_CASE("a context switch and a barrier-heavy block are cheap", "[cuda_emulation]") {
  const double switch_ns = emulation::MeasureSwitchNanoseconds(200000);
  std::vector<int> out(256);
  REQUIRE(launch_kernel(TenBarriers, dim3(1), dim3(256), 0, nullptr, out.data()) == cudaSuccess);
  const auto start = std::chrono::steady_clock::now();
#if defined(KESTREL_FIBER_ASAN) || defined(KESTREL_FIBER_TSAN)
  constexpr int kLaunches = 2;
#else
  constexpr int kLaunches = 20;
#endif
  for (int i = 0; i < kLaunches; ++i) {
    REQUIRE(launch_kernel(TenBarriers, dim3(1), dim3(256), 0, nullptr, out.data()) ==
            cudaSuccess);
  }
  const double block_us =
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count() /
      kLaunches;
  std::printf("cuda emulation: %.1f ns per context switch; a 256-thread block with 20 barriers: "
              "%.0f us\n", switch_ns, block_us);
#if defined(KESTREL_FIBER_ASM) && !defined(KESTREL_FIBER_ASAN) && !defined(KESTREL_FIBER_TSAN)
  CHECK(switch_ns < 1000.0);
  CHECK(block_us < 5000.0);  // generous: CI machines are shared
#endif
}

}  // namespace
}  // namespace kestrel::cuda
