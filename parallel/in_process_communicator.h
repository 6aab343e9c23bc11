// The communicator of CPU tensor-parallel ranks: a group of ranks that are
// threads of one process, exchanging data through shared memory. Results
// are deterministic: an all-reduce sums in rank order (rank 0 + rank 1 +
// ...), so they do not depend on thread timing and are bit-identical from
// run to run, which is what lets TP = 2 and TP = 4 be compared with TP = 1.
//
//   ASSIGN_OR_RETURN(std::vector<std::unique_ptr<Communicator>> comms,
//                    InProcessCommunicator::CreateGroup({.size = 2}));
//   // Hand comms[r] to rank r's worker thread.
#ifndef KESTREL_PARALLEL_IN_PROCESS_COMMUNICATOR_H_
#define KESTREL_PARALLEL_IN_PROCESS_COMMUNICATOR_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "parallel/communicator.h"

namespace kestrel::parallel {

class InProcessGroupState;

struct InProcessGroupOptions {
  // Ranks in the group, >= 1.
  int size = 1;
  // A rank that waits longer than this for the other ranks to join a
  // collective gets DEADLINE_EXCEEDED naming the missing ranks, and the
  // group is aborted. Zero: wait until they come or the group is aborted.
  absl::Duration timeout = absl::ZeroDuration();
};

// One rank of an in-process group. Collectives are synchronous: the k-th
// collective of every rank meets at a barrier, then each rank computes its
// slice of the result for all ranks (for an all-reduce, elements
// [count * rank / size, count * (rank + 1) / size), summed in rank order)
// directly in the other ranks' buffers, and a second barrier ends the
// collective. Once every rank has joined, a collective runs to completion
// even if the group is aborted meanwhile, so no rank returns while another
// still writes into its buffers.
//
// Thread-compatible per rank (one thread drives it); Abort is thread-safe.
// Destroying a rank's communicator aborts the group, so a rank that goes
// away never leaves the others waiting.
class InProcessCommunicator final : public Communicator {
 public:
  // `options.size` communicators, element r being rank r.
  static absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> CreateGroup(
      const InProcessGroupOptions& options);

  ~InProcessCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  absl::Status AllReduceSum(const void* send, void* recv, int64_t count,
                            kernels::DType dtype) override;
  absl::Status AllGather(const void* send, void* recv, int64_t count,
                         kernels::DType dtype) override;
  absl::Status Broadcast(void* buffer, int64_t count, kernels::DType dtype, int root) override;
  void Abort(absl::string_view reason) override;

 private:
  InProcessCommunicator(std::shared_ptr<InProcessGroupState> state, int rank, int size);
  absl::Status Run(const CollectiveArgs& args, const void* send, void* recv);

  // Constant after construction.
  const std::shared_ptr<InProcessGroupState> state_;
  const int rank_;
  const int size_;
  // This rank's collectives so far (the next one's number, for messages).
  int64_t sequence_ = 0;
};

}  // namespace kestrel::parallel

#endif  // KESTREL_PARALLEL_IN_PROCESS_COMMUNICATOR_H_
