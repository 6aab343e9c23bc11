// The CUDA emulation's runtime API (memory registry, copies, streams,
// events, device attributes, last-error semantics) and its software half
// and bf16 types, bit for bit against _Float16 and kernels/dtype.h.
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cuda/cuda_compat.h"
#include "kernels/cuda/emulation/run_hidden_test.h"
#include "kernels/dtype.h"

namespace kestrel::cuda {
namespace {

TEST_CASE("cudaMalloc returns 256-aligned tracked memory; cudaFree checks the pointer",
          "[cuda_emulation]") {
  const size_t before = emulation::AllocatedBytes();
  float* a = nullptr;
  REQUIRE(cudaMalloc(&a, 1000 * sizeof(float)) == cudaSuccess);
  REQUIRE(a != nullptr);
  CHECK(reinterpret_cast<uintptr_t>(a) % 256 == 0);
  CHECK(emulation::AllocatedBytes() == before + 4000);
  int stack_value = 0;
  CHECK(cudaFree(&stack_value) == cudaErrorInvalidValue);
  CHECK(cudaFree(a + 1) == cudaErrorInvalidValue);
  CHECK(cudaPeekAtLastError() == cudaErrorInvalidValue);
  CHECK(cudaGetLastError() == cudaErrorInvalidValue);
  CHECK(cudaGetLastError() == cudaSuccess);  // reading cleared it
  CHECK(cudaFree(a) == cudaSuccess);
  CHECK(cudaFree(a) == cudaErrorInvalidValue);  // twice
  CHECK(cudaFree(nullptr) == cudaSuccess);
  CHECK(emulation::AllocatedBytes() == before);
  void* empty = &stack_value;
  CHECK(cudaMalloc(&empty, 0) == cudaSuccess);
  CHECK(empty == nullptr);
  (void)cudaGetLastError();
}

TEST_CASE("copies and memsets check the pointers against the copy's kind", "[cuda_emulation]") {
  std::vector<int> host(64), back(64, 0);
  for (int i = 0; i < 64; ++i) host[static_cast<size_t>(i)] = i * i;
  int *d = nullptr, *e = nullptr;
  REQUIRE(cudaMalloc(&d, 64 * sizeof(int)) == cudaSuccess);
  REQUIRE(cudaMalloc(&e, 64 * sizeof(int)) == cudaSuccess);
  CHECK(cudaMemcpy(d, host.data(), 64 * sizeof(int), cudaMemcpyHostToDevice) == cudaSuccess);
  CHECK(cudaMemcpyAsync(e, d, 64 * sizeof(int), cudaMemcpyDeviceToDevice, nullptr) ==
        cudaSuccess);
  CHECK(cudaMemcpy(back.data(), e, 64 * sizeof(int), cudaMemcpyDeviceToHost) == cudaSuccess);
  CHECK(back == host);
  CHECK(cudaMemset(d + 8, 0, 8 * sizeof(int)) == cudaSuccess);
  CHECK(cudaMemcpy(back.data(), d, 64 * sizeof(int), cudaMemcpyDefault) == cudaSuccess);
  CHECK(back[7] == 49);
  CHECK(back[8] == 0);
  CHECK(back[15] == 0);
  CHECK(back[16] == 256);

  // Wrong kinds and ranges past the allocation are errors, as on a GPU.
  CHECK(cudaMemcpy(host.data(), back.data(), 16, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);
  CHECK(cudaMemcpy(d, host.data(), 16, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue);
  CHECK(cudaMemcpy(d + 60, host.data(), 8 * sizeof(int), cudaMemcpyHostToDevice) ==
        cudaErrorInvalidValue);
  CHECK(cudaMemset(host.data(), 0, 16) == cudaErrorInvalidValue);
  CHECK(cudaMemset(d + 63, 0, 8) == cudaErrorInvalidValue);
  CHECK(cudaMemcpy(d, host.data(), 16, static_cast<cudaMemcpyKind>(9)) ==
        cudaErrorInvalidMemcpyDirection);
  CHECK(cudaGetLastError() == cudaErrorInvalidMemcpyDirection);
  CHECK(cudaFree(d) == cudaSuccess);
  CHECK(cudaFree(e) == cudaSuccess);
}

TEST_CASE("device memory never freed, for the LeakSanitizer probe", "[.leak_probe]") {
  void* p = nullptr;
  REQUIRE(cudaMalloc(&p, 12345) == cudaSuccess);
  p = nullptr;
}

TEST_CASE("cudaMalloc without cudaFree is a leak under AddressSanitizer", "[cuda_emulation]") {
#if !defined(__SANITIZE_ADDRESS__)
  SUCCEED("only under AddressSanitizer");
#else
  const testing::ChildResult child = testing::RunHiddenTest("[.leak_probe]");
  INFO(child.output);
  CHECK(child.status != 0);
  CHECK(child.output.find("detected memory leaks") != std::string::npos);
  CHECK(child.output.find("12345 byte(s)") != std::string::npos);
#endif
}

TEST_CASE("pinned host memory has its own registry", "[cuda_emulation]") {
  void* pinned = nullptr;
  REQUIRE(cudaMallocHost(&pinned, 100) == cudaSuccess);
  CHECK(cudaFree(pinned) == cudaErrorInvalidValue);
  CHECK(cudaFreeHost(pinned) == cudaSuccess);
  CHECK(cudaFreeHost(pinned) == cudaErrorInvalidValue);
  (void)cudaGetLastError();
}

TEST_CASE("cudaMemGetInfo follows allocations and the configured capacity",
          "[cuda_emulation]") {
  emulation::SetMemoryCapacity(size_t{1} << 20);
  size_t free_bytes = 0, total_bytes = 0;
  REQUIRE(cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess);
  CHECK(total_bytes == size_t{1} << 20);
  const size_t free_before = free_bytes;
  void* p = nullptr;
  REQUIRE(cudaMalloc(&p, 4096) == cudaSuccess);
  REQUIRE(cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess);
  CHECK(free_bytes == free_before - 4096);
  void* too_big = nullptr;
  CHECK(cudaMalloc(&too_big, size_t{1} << 20) == cudaErrorMemoryAllocation);
  CHECK(too_big == nullptr);
  CHECK(cudaGetLastError() == cudaErrorMemoryAllocation);
  CHECK(cudaFree(p) == cudaSuccess);
  emulation::SetMemoryCapacity(size_t{16} << 30);
}

TEST_CASE("streams and events", "[cuda_emulation]") {
  cudaStream_t stream = nullptr;
  REQUIRE(cudaStreamCreate(&stream) == cudaSuccess);
  cudaEvent_t start = nullptr, end = nullptr;
  REQUIRE(cudaEventCreate(&start) == cudaSuccess);
  REQUIRE(cudaEventCreate(&end) == cudaSuccess);
  float ms = -1.0f;
  CHECK(cudaEventElapsedTime(&ms, start, end) == cudaErrorInvalidResourceHandle);  // unrecorded
  CHECK(cudaEventRecord(start, stream) == cudaSuccess);
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  CHECK(cudaEventRecord(end, stream) == cudaSuccess);
  CHECK(cudaEventSynchronize(end) == cudaSuccess);
  CHECK(cudaEventElapsedTime(&ms, start, end) == cudaSuccess);
  CHECK(ms >= 2.0f);
  CHECK(ms < 2000.0f);
  CHECK(cudaStreamSynchronize(stream) == cudaSuccess);
  CHECK(cudaStreamSynchronize(nullptr) == cudaSuccess);
  CHECK(cudaDeviceSynchronize() == cudaSuccess);
  CHECK(cudaEventDestroy(start) == cudaSuccess);
  CHECK(cudaEventDestroy(end) == cudaSuccess);
  CHECK(cudaEventDestroy(end) == cudaErrorInvalidResourceHandle);
  CHECK(cudaStreamDestroy(stream) == cudaSuccess);
  CHECK(cudaStreamSynchronize(stream) == cudaErrorInvalidResourceHandle);
  (void)cudaGetLastError();
}

TEST_CASE("the device looks like an H200", "[cuda_emulation]") {
  int count = 0, device = -1, value = 0;
  CHECK(cudaGetDeviceCount(&count) == cudaSuccess);
  CHECK(count == 1);
  CHECK(cudaSetDevice(0) == cudaSuccess);
  CHECK(cudaSetDevice(1) == cudaErrorInvalidDevice);
  CHECK(cudaGetDevice(&device) == cudaSuccess);
  CHECK(device == 0);
  CHECK(cudaDeviceGetAttribute(&value, cudaDevAttrMultiProcessorCount, 0) == cudaSuccess);
  CHECK(value == 132);
  CHECK(cudaDeviceGetAttribute(&value, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0) ==
        cudaSuccess);
  CHECK(value == 227 * 1024);
  CHECK(cudaDeviceGetAttribute(&value, cudaDevAttrComputeCapabilityMajor, 0) == cudaSuccess);
  CHECK(value == 9);
  CHECK(cudaDeviceGetAttribute(&value, cudaDevAttrMultiProcessorCount, 3) ==
        cudaErrorInvalidDevice);
  CHECK(std::string(cudaGetErrorName(cudaErrorInvalidDevice)) == "cudaErrorInvalidDevice");
  CHECK(std::string(cudaGetErrorString(cudaErrorMemoryAllocation)) == "out of memory");
  (void)cudaGetLastError();
}

TEST_CASE("the last error is per host thread", "[cuda_emulation]") {
  CHECK(cudaSetDevice(5) == cudaErrorInvalidDevice);
  cudaError_t other = cudaErrorUnknown;
  std::thread([&] { other = cudaPeekAtLastError(); }).join();
  CHECK(other == cudaSuccess);
  CHECK(cudaGetLastError() == cudaErrorInvalidDevice);
}

std::vector<float> Interesting(size_t random_count) {
  std::vector<float> v = {0.0f, -0.0f, 1.0f, -1.0f, 0.5f, 65504.0f, 65519.99f, 65520.0f, 1e9f,
                          -1e9f, 6.1035156e-05f, 6.0975552e-05f, 5.9604645e-08f, 2.9802322e-08f,
                          2.9802326e-08f, 8.9406967e-08f, 1e-10f,
                          std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity(),
                          std::numeric_limits<float>::denorm_min(),
                          std::numeric_limits<float>::max(), 3.0e38f};
  std::mt19937 rng(42);
  for (size_t i = 0; i < random_count; ++i) {
    // Random bit patterns cover every exponent, including the rounding
    // boundaries of both 16-bit formats.
    uint32_t bits = static_cast<uint32_t>(rng());
    float f;
    std::memcpy(&f, &bits, sizeof f);
    if (!std::isnan(f)) v.push_back(f);
    // And halfway cases: a half/bf16 value plus exactly half a step.
    const uint32_t halfway_bf16 = (bits & 0xffff0000u) | 0x8000u;
    std::memcpy(&f, &halfway_bf16, sizeof f);
    if (!std::isnan(f)) v.push_back(f);
    const uint32_t halfway_half = (bits & 0xffffe000u) | 0x1000u;
    std::memcpy(&f, &halfway_half, sizeof f);
    if (!std::isnan(f)) v.push_back(f);
  }
  return v;
}

TEST_CASE("__half conversions are bit-exact with _Float16", "[cuda_emulation]") {
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const __half h = __ushort_as_half(static_cast<unsigned short>(bits));
    _Float16 want;
    const uint16_t b16 = static_cast<uint16_t>(bits);
    std::memcpy(&want, &b16, sizeof want);
    const float got = __half2float(h);
    const float expected = static_cast<float>(want);
    if (std::isnan(expected)) {
      REQUIRE(std::isnan(got));
    } else {
      uint32_t g, e;
      std::memcpy(&g, &got, 4);
      std::memcpy(&e, &expected, 4);
      REQUIRE(g == e);
    }
  }
  for (float f : Interesting(50000)) {
    const _Float16 want = static_cast<_Float16>(f);
    uint16_t want_bits;
    std::memcpy(&want_bits, &want, sizeof want_bits);
    INFO(f);
    REQUIRE(__half_as_ushort(__float2half(f)) == want_bits);
  }
  CHECK(std::isnan(__half2float(__float2half(std::nanf("")))));
}

TEST_CASE("__nv_bfloat16 conversions are bit-exact with kernels/dtype.h", "[cuda_emulation]") {
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const float got = __bfloat162float(__ushort_as_bfloat16(static_cast<unsigned short>(bits)));
    const float want = kernels::Bf16ToF32(static_cast<uint16_t>(bits));
    REQUIRE(std::memcmp(&got, &want, sizeof got) == 0);
  }
  for (float f : Interesting(50000)) {
    INFO(f);
    REQUIRE(__bfloat16_as_ushort(__float2bfloat16(f)) == kernels::F32ToBf16(f));
  }
  CHECK(std::isnan(__bfloat162float(__float2bfloat16(std::nanf("")))));
}

TEST_CASE("16-bit float arithmetic computes in float and rounds once", "[cuda_emulation]") {
  const __nv_bfloat16 a = __float2bfloat16(1.5f), b = __float2bfloat16(2.25f);
  CHECK(__bfloat162float(a + b) == 3.75f);
  CHECK(__bfloat162float(a * b) == __bfloat162float(__float2bfloat16(1.5f * 2.25f)));
  CHECK(__bfloat162float(-a) == -1.5f);
  CHECK(a < b);
  __half h = __float2half(1.0f);
  h += __float2half(1.0f / 3.0f);
  CHECK(__half2float(h) == __half2float(__float2half(1.0f + __half2float(__float2half(1.0f / 3.0f)))));
  const __nv_bfloat162 pair = __floats2bfloat162_rn(1.0f, -2.0f);
  const float2 unpacked = __bfloat1622float2(pair);
  CHECK(unpacked.x == 1.0f);
  CHECK(unpacked.y == -2.0f);
}

TEST_CASE("device math and bit intrinsics", "[cuda_emulation]") {
  CHECK(__float_as_int(1.0f) == 0x3f800000);
  CHECK(__int_as_float(0x40000000) == 2.0f);
  CHECK(__float_as_uint(-0.0f) == 0x80000000u);
  CHECK(__uint_as_float(0x3f800000u) == 1.0f);
  CHECK(__popc(0xf0f0u) == 8);
  CHECK(__ffs(0) == 0);
  CHECK(__ffs(8) == 4);
  CHECK(__clz(1) == 31);
  CHECK(__clz(0) == 32);
  CHECK(rsqrtf(4.0f) == 0.5f);
  CHECK(std::fabs(__expf(1.0f) - 2.7182817f) < 1e-6f);
  CHECK(__fdividef(1.0f, 4.0f) == 0.25f);
  CHECK(isinf(INFINITY));
  CHECK(isnan(__int_as_float(0x7fc00000)));
  CHECK(fmaxf(1.0f, 2.0f) == 2.0f);
  const float x = 3.0f;
  CHECK(__ldg(&x) == 3.0f);
  const float4 v = make_float4(1, 2, 3, 4);
  CHECK(alignof(float4) == 16);
  CHECK(alignof(uint4) == 16);
  CHECK(alignof(int4) == 16);
  CHECK(alignof(float2) == 8);
  CHECK(alignof(uint2) == 8);
  CHECK(v.w == 4.0f);
  CHECK(make_uint4(1, 2, 3, 4).z == 3u);
}

}  // namespace
}  // namespace kestrel::cuda
