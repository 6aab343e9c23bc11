// The emulated NCCL on its own: ranks as threads, results, and the errors
// the emulation gives where NCCL would hang.
#include <nccl.h>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/dtype.h"

namespace {

// nranks communicators of one fresh id, initialized on one thread each.
std::vector<ncclComm_t> InitComms(int nranks) {
  ncclUniqueId id;
  REQUIRE(ncclGetUniqueId(&id) == ncclSuccess);
  std::vector<ncclComm_t> comms(nranks);
  std::vector<ncclResult_t> results(nranks);
  std::vector<std::thread> threads;
  for (int r = 0; r < nranks; ++r) {
    threads.emplace_back([&, r] { results[r] = ncclCommInitRank(&comms[r], nranks, id, r); });
  }
  for (std::thread& t : threads) t.join();
  for (ncclResult_t result : results) REQUIRE(result == ncclSuccess);
  return comms;
}

// Runs body(rank) on one thread per rank; returns their results.
std::vector<ncclResult_t> OnRanks(int nranks, const std::function<ncclResult_t(int)>& body) {
  std::vector<ncclResult_t> results(nranks);
  std::vector<std::thread> threads;
  for (int r = 0; r < nranks; ++r) threads.emplace_back([&, r] { results[r] = body(r); });
  for (std::thread& t : threads) t.join();
  return results;
}

TEST_CASE("Emulated ncclAllReduce sums F32 in rank order; BF16 rounds after each addition") {
  const int nranks = 3;
  std::vector<ncclComm_t> comms = InitComms(nranks);
  // 1 + 2^-24 + 2^-24: rank order rounds each addition away in F32.
  const float f32_in[nranks] = {1.0f, 0x1p-24f, 0x1p-24f};
  std::vector<float> f32_out(nranks);
  const uint16_t bf16_in[nranks] = {kestrel::kernels::F32ToBf16(1.0f),
                                    kestrel::kernels::F32ToBf16(0x1p-8f),
                                    kestrel::kernels::F32ToBf16(0x1p-8f)};
  std::vector<uint16_t> bf16_out(nranks);
  const auto results = OnRanks(nranks, [&](int r) {
    ncclResult_t result =
        ncclAllReduce(&f32_in[r], &f32_out[r], 1, ncclFloat32, ncclSum, comms[r], nullptr);
    if (result != ncclSuccess) return result;
    return ncclAllReduce(&bf16_in[r], &bf16_out[r], 1, ncclBfloat16, ncclSum, comms[r], nullptr);
  });
  for (int r = 0; r < nranks; ++r) {
    REQUIRE(results[r] == ncclSuccess);
    REQUIRE(f32_out[r] == 1.0f);
    // 1 + 2^-8 rounds to 1 in BF16 (8 bits of mantissa), twice.
    REQUIRE(kestrel::kernels::Bf16ToF32(bf16_out[r]) == 1.0f);
  }
  for (ncclComm_t comm : comms) REQUIRE(ncclCommDestroy(comm) == ncclSuccess);
}

TEST_CASE("Emulated NCCL reports mismatched calls instead of hanging") {
  std::vector<ncclComm_t> comms = InitComms(2);
  float buffer[2][4] = {};
  const auto results = OnRanks(2, [&](int r) {
    return ncclAllReduce(buffer[r], buffer[r], r == 0 ? 3 : 4, ncclFloat32, ncclSum, comms[r],
                         nullptr);
  });
  REQUIRE(results[0] == ncclInvalidUsage);
  REQUIRE(results[1] == ncclInvalidUsage);
  ncclResult_t async_error = ncclSuccess;
  REQUIRE(ncclCommGetAsyncError(comms[0], &async_error) == ncclSuccess);
  REQUIRE(async_error == ncclInvalidUsage);
  for (ncclComm_t comm : comms) REQUIRE(ncclCommAbort(comm) == ncclSuccess);
}

TEST_CASE("Emulated ncclCommAbort ends a peer's pending collective with ncclRemoteError") {
  std::vector<ncclComm_t> comms = InitComms(2);
  float x = 1.0f;
  std::string message;
  std::thread waiter([&] {
    const ncclResult_t result = ncclBroadcast(&x, &x, 1, ncclFloat32, 0, comms[1], nullptr);
    message = std::to_string(result) + ": " + ncclGetLastError(comms[1]);
  });
  REQUIRE(ncclCommAbort(comms[0]) == ncclSuccess);
  waiter.join();
  REQUIRE(message == "6: rank 0 ended its communicator (ncclCommAbort)");
  REQUIRE(ncclCommDestroy(comms[1]) == ncclSuccess);
}

TEST_CASE("Emulated NCCL checks its arguments") {
  ncclComm_t comm = nullptr;
  ncclUniqueId id;
  REQUIRE(ncclGetUniqueId(&id) == ncclSuccess);
  REQUIRE(ncclCommInitRank(&comm, 2, id, 2) == ncclInvalidArgument);
  REQUIRE(ncclCommInitRank(&comm, 1, id, 0) == ncclSuccess);
  float x = 0.0f;
  REQUIRE(ncclAllReduce(&x, &x, 1, ncclInt32, ncclSum, comm, nullptr) == ncclInvalidArgument);
  REQUIRE(ncclAllReduce(&x, &x, 1, ncclFloat32, ncclMax, comm, nullptr) == ncclInvalidArgument);
  REQUIRE(ncclBroadcast(&x, &x, 1, ncclFloat32, 1, comm, nullptr) == ncclInvalidArgument);
  REQUIRE(std::string(ncclGetLastError(comm)) == "ncclBroadcast: root 1 outside [0, 1)");
  REQUIRE(ncclAllGather(nullptr, &x, 1, ncclFloat32, comm, nullptr) == ncclInvalidArgument);
  REQUIRE(ncclAllGather(&x, &x, 1, ncclFloat32, comm, nullptr) == ncclSuccess);
  REQUIRE(ncclCommDestroy(comm) == ncclSuccess);
}

}  // namespace
