// The collectives tensor-parallel ranks use to combine their shards: an
// all-reduce after the row-parallel projections, an all-gather of
// vocab-parallel logits, a broadcast of the step. One interface, two
// implementations: InProcessCommunicator (CPU ranks as threads of one
// process, in_process_communicator.h) and NcclCommunicator (GPUs,
// nccl_communicator.h). docs/parallel.md describes both.
//
//   // On rank r's thread, after every rank computed its partial o_proj:
//   RETURN_IF_ERROR(comm.AllReduceSum(partial, hidden, n * d, DType::kF32));
#ifndef KESTREL_PARALLEL_COMMUNICATOR_H_
#define KESTREL_PARALLEL_COMMUNICATOR_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "kernels/dtype.h"

namespace kestrel::parallel {

// One member (a rank) of a group of `size()` ranks. Each rank's
// communicator is driven by that rank's worker thread; Abort() alone may be
// called from any thread.
//
// Buffers are device memory of the rank's backend (host memory on the CPU
// backend, cudaMalloc'ed memory for NCCL), given as raw pointers and an
// element count, like the op interface (kernels/ops.h). A collective is
// ordered after the work already issued on the rank's stream and before the
// work issued after it; every call returns once its result is in place, so
// the host may then read it (after the device's usual CopyToHost).
//
// Matching: the k-th collective call of every rank forms one collective.
// Every rank must make the same call (same operation, dtype, count and
// root); a mismatch is a bug in the caller that the communicator reports
// instead of hanging or corrupting memory: every rank of that collective
// gets an error naming the operation and both ranks' arguments, and the
// group is aborted.
//
// Errors: INVALID_ARGUMENT for bad arguments (checked on the calling rank
// before it joins the collective) and for a mismatch; ABORTED once the
// group is aborted, naming the reason; DEADLINE_EXCEEDED when a collective
// waits longer than the group's timeout. Every failed collective aborts the
// group (its ranks can no longer agree on what the next collective is), so
// the other ranks never wait for a rank that gave up.
class Communicator {
 public:
  virtual ~Communicator() = default;

  // This rank, in [0, size()).
  virtual int rank() const = 0;
  // Ranks in the group.
  virtual int size() const = 0;

  // recv[i] = sum over ranks of send[i], the same on every rank. `send` may
  // equal `recv` (in place); otherwise they must not overlap. dtype is kF32,
  // kBF16 or kF16; the sum is computed in F32 and rounded to dtype.
  // Summation order: see the implementation (in-process: rank order,
  // bit-identical run to run).
  //   send, recv: [count] elements of dtype
  virtual absl::Status AllReduceSum(const void* send, void* recv, int64_t count,
                                    kernels::DType dtype) = 0;

  // recv[r * count + i] = send of rank r [i]. In place when
  // send == recv + rank() * count (in elements).
  //   send: [count], recv: [size(), count], elements of any dtype
  virtual absl::Status AllGather(const void* send, void* recv, int64_t count,
                                 kernels::DType dtype) = 0;

  // Every rank's `buffer` gets rank `root`'s contents.
  //   buffer: [count] elements of any dtype
  virtual absl::Status Broadcast(void* buffer, int64_t count, kernels::DType dtype, int root) = 0;

  // Aborts the whole group: every rank blocked in a collective returns
  // ABORTED naming `reason` promptly, and every later call on any rank
  // fails at once. The first reason wins; later calls do nothing.
  // Thread-safe. An aborted group cannot be revived: build a new one.
  virtual void Abort(absl::string_view reason) = 0;
};

// The collectives, for messages.
enum class Collective : uint8_t { kAllReduceSum, kAllGather, kBroadcast };
const char* CollectiveName(Collective op);

// One rank's arguments to a collective: what ranks must agree on.
struct CollectiveArgs {
  Collective op = Collective::kAllReduceSum;
  kernels::DType dtype = kernels::DType::kF32;
  int64_t count = 0;
  int root = 0;  // kBroadcast only

  // "AllReduceSum of 10 F32 elements", "Broadcast of 3 BF16 elements from rank 1".
  std::string Describe() const;
  bool operator==(const CollectiveArgs&) const = default;
};

// The argument checks every implementation makes before joining a
// collective: dtype supported (kF32/kBF16/kF16 for sums), count >= 0, root
// in range, non-null buffers when count > 0. `rank` and `size` name the
// caller in messages.
absl::Status ValidateCollective(const CollectiveArgs& args, const void* send, const void* recv,
                                int rank, int size);

// The mismatch message both implementations give:
// "collective #7 mismatch: rank 0 called AllReduceSum of 10 F32 elements,
//  rank 1 called AllReduceSum of 12 F32 elements".
std::string MismatchMessage(int64_t sequence, int rank_a, const CollectiveArgs& a, int rank_b,
                            const CollectiveArgs& b);

}  // namespace kestrel::parallel

#endif  // KESTREL_PARALLEL_COMMUNICATOR_H_
