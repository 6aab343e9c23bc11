// InProcessCommunicator against the Communicator conformance tests, plus
// its own options.
#include "parallel/in_process_communicator.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include <catch2/catch.hpp>

#include "parallel/communicator_conformance.h"

namespace kestrel::parallel {

const testing::CommunicatorHarness& testing::Harness() {
  static const CommunicatorHarness harness = {
      .create = [](int size, absl::Duration timeout) {
        return InProcessCommunicator::CreateGroup({.size = size, .timeout = timeout});
      },
      .allocate = [](size_t bytes) { return ::operator new(bytes, std::align_val_t{64}); },
      .free = [](void* p) { ::operator delete(p, std::align_val_t{64}); },
      .upload = [](void* device, const void* host, size_t bytes) {
        std::memcpy(device, host, bytes);
      },
      .download = [](void* host, const void* device, size_t bytes) {
        std::memcpy(host, device, bytes);
      },
  };
  return harness;
}

namespace {

TEST_CASE("InProcessCommunicator::CreateGroup checks its options") {
  auto zero = InProcessCommunicator::CreateGroup({.size = 0});
  REQUIRE(absl::IsInvalidArgument(zero.status()));
  REQUIRE(zero.status().message() == "in-process group size must be >= 1, got 0");
  auto negative = InProcessCommunicator::CreateGroup({.size = 2, .timeout = absl::Seconds(-1)});
  REQUIRE(absl::IsInvalidArgument(negative.status()));
  REQUIRE(negative.status().message() == "in-process group timeout must be >= 0, got -1s");
}

}  // namespace
}  // namespace kestrel::parallel
