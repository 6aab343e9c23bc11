// The behaviour every Communicator implementation must have, as Catch2 test
// cases (communicator_conformance.cc) run against the harness the test
// binary defines: how to create a group and move its device memory.
//
//   // in_process_communicator_test.cc
//   const CommunicatorHarness& kestrel::parallel::testing::Harness() {
//     static const CommunicatorHarness harness = {...};
//     return harness;
//   }
#ifndef KESTREL_PARALLEL_COMMUNICATOR_CONFORMANCE_H_
#define KESTREL_PARALLEL_COMMUNICATOR_CONFORMANCE_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "parallel/communicator.h"

namespace kestrel::parallel::testing {

struct CommunicatorHarness {
  // A group of `size` ranks whose collectives time out after `timeout`
  // (zero: never).
  std::function<absl::StatusOr<std::vector<std::unique_ptr<Communicator>>>(
      int size, absl::Duration timeout)>
      create;
  // Device memory the communicators accept, and copies to and from it.
  // Called on rank threads: they abort the process on failure (Catch2
  // assertions are not thread-safe).
  std::function<void*(size_t bytes)> allocate;
  std::function<void(void*)> free;
  std::function<void(void* device, const void* host, size_t bytes)> upload;
  std::function<void(void* host, const void* device, size_t bytes)> download;
  // The largest group the machine can hold (GPUs on it).
  int max_size = 4;
  // F32 sums in rank order (bit-exact against the reference); otherwise
  // compared with a tolerance.
  bool rank_order_sums = true;
  // F16/BF16 sums rounded to the type after each addition (NCCL) rather
  // than accumulated in F32 and rounded once.
  bool half_sums_round_each_step = false;
  // A collective waiting for a rank that never comes ends with
  // DEADLINE_EXCEEDED after the group's timeout.
  bool timeout_ends_wait = true;
};

// Defined by each test binary.
const CommunicatorHarness& Harness();

}  // namespace kestrel::parallel::testing

#endif  // KESTREL_PARALLEL_COMMUNICATOR_CONFORMANCE_H_
