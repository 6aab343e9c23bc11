// The communicator of GPU tensor-parallel ranks: NCCL, one communicator per
// GPU, the ranks being threads of one process. Built twice from one source
// (bazel/cuda.bzl's cuda_kernel_library): `:nccl_communicator` against
// NVIDIA's NCCL (--config=cuda), `:nccl_communicator_emulated` against
// parallel/nccl_emulation (a CPU NCCL on the CUDA emulation), so this code
// runs in CI without a GPU.
//
//   ASSIGN_OR_RETURN(std::vector<std::unique_ptr<Communicator>> comms,
//                    NcclCommunicator::CreateGroup({.size = 2}));  // GPUs 0 and 1
//   // Hand comms[r] to rank r's worker thread.
#ifndef KESTREL_PARALLEL_NCCL_COMMUNICATOR_H_
#define KESTREL_PARALLEL_NCCL_COMMUNICATOR_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "kernels/cuda/cuda_compat.h"
#include "parallel/communicator.h"

namespace kestrel::parallel {

class NcclGroupState;

struct NcclGroupOptions {
  // Ranks in the group, >= 1.
  int size = 1;
  // CUDA device of each rank ([size]); empty: rank r uses device r. NCCL
  // wants distinct devices; the emulation has one device, which every rank
  // may use.
  std::vector<int> devices = {};
  // The stream each rank's collectives are ordered on ([size]), normally
  // its backend's; empty: each communicator creates and owns one.
  std::vector<cudaStream_t> streams = {};
  // A rank whose collective has not completed after this long gets
  // DEADLINE_EXCEEDED and the group is aborted. Zero: no limit. (Under the
  // emulation a collective blocks inside NCCL, so only Abort ends it.)
  absl::Duration timeout = absl::ZeroDuration();
};

// One rank of an NCCL group. Each collective is enqueued on the rank's
// stream, then the calling thread waits for it (polling the stream, the
// group's abort flag, NCCL's asynchronous error and the timeout), so Abort
// ends a wait that NCCL alone would never end. Reductions use NCCL's
// algorithms: sums are identical on every rank but not in rank order, and
// F16/BF16 sums round to the element type at each step (unlike
// InProcessCommunicator).
//
// Abort marks the group aborted and calls ncclCommAbort on every rank's
// communicator that is not inside an NCCL call at that moment; a rank that
// is (waiting for its collective) aborts its own when it sees the flag.
//
// Thread-compatible per rank (one thread drives it); Abort is thread-safe.
// Destroying a rank's communicator aborts the group.
class NcclCommunicator final : public Communicator {
 public:
  // Creates the group: ncclCommInitRank on one thread per rank, then one
  // small all-reduce so NCCL sets up its connections now rather than in the
  // first step. INVALID_ARGUMENT for bad options (a device that does not
  // exist), UNAVAILABLE without a usable GPU. Element r is rank r.
  static absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> CreateGroup(
      const NcclGroupOptions& options);

  ~NcclCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  absl::Status AllReduceSum(const void* send, void* recv, int64_t count,
                            kernels::DType dtype) override;
  absl::Status AllGather(const void* send, void* recv, int64_t count,
                         kernels::DType dtype) override;
  absl::Status Broadcast(void* buffer, int64_t count, kernels::DType dtype, int root) override;
  void Abort(absl::string_view reason) override;

 private:
  friend class NcclGroupState;
  struct Handle;  // ncclComm_t and its lock (nccl_communicator.cc)

  NcclCommunicator(std::shared_ptr<NcclGroupState> state, int rank, int size, int device,
                   cudaStream_t stream, bool owns_stream);
  absl::Status Run(const CollectiveArgs& args, const void* send, void* recv);
  // Waits for the collective just enqueued; `what` names it in errors.
  absl::Status WaitForStream(const std::function<std::string()>& what);

  // Constant after construction.
  const std::shared_ptr<NcclGroupState> state_;
  const int rank_;
  const int size_;
  const int device_;
  const cudaStream_t stream_;
  const bool owns_stream_;
  const std::unique_ptr<Handle> handle_;
  // This rank's collectives so far (the next one's number).
  int64_t sequence_ = 0;
};

}  // namespace kestrel::parallel

#endif  // KESTREL_PARALLEL_NCCL_COMMUNICATOR_H_
