#include "parallel/in_process_communicator.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace kestrel::parallel {

using kernels::DType;

namespace {

// One rank's buffers in the current collective.
struct RankBuffers {
  const void* send = nullptr;
  void* recv = nullptr;
};

// Elements summed per pass: the accumulator stays in L1.
constexpr int64_t kSumBlock = 1024;

// For i in [begin, end): the rank-order sum of every rank's send[i] (F32
// accumulation starting from rank 0's value, one rounding to dtype at the
// end), written to every rank's recv[i]. Reads all sends before writing, so
// in-place buffers are fine.
void SumSlice(DType dtype, const std::vector<RankBuffers>& buffers, int64_t begin, int64_t end) {
  float acc[kSumBlock];
  for (int64_t block = begin; block < end; block += kSumBlock) {
    const int64_t n = std::min(kSumBlock, end - block);
    for (size_t r = 0; r < buffers.size(); ++r) {
      const void* send = buffers[r].send;
      for (int64_t i = 0; i < n; ++i) {
        const float v = kernels::LoadAsF32(send, dtype, block + i);
        acc[i] = r == 0 ? v : acc[i] + v;
      }
    }
    for (const RankBuffers& b : buffers) {
      switch (dtype) {
        case DType::kF32:
          std::memcpy(static_cast<float*>(b.recv) + block, acc, n * sizeof(float));
          break;
        case DType::kBF16:
          for (int64_t i = 0; i < n; ++i) {
            static_cast<uint16_t*>(b.recv)[block + i] = kernels::F32ToBf16(acc[i]);
          }
          break;
        case DType::kF16:
          for (int64_t i = 0; i < n; ++i) {
            static_cast<uint16_t*>(b.recv)[block + i] = kernels::F32ToF16(acc[i]);
          }
          break;
        default:
          std::abort();  // ValidateCollective admits only the types above
      }
    }
  }
}

}  // namespace

// What the ranks of one group share: the barrier, the current collective's
// arguments and buffers, and the abort state.
//
// A collective is two barrier passages. Between them every rank reads the
// arguments and buffers the others registered before the first passage
// (ordered by mu_), and nobody writes them: a rank registers its next
// collective only after the second passage, which needs every rank to have
// finished its work.
class InProcessGroupState {
 public:
  InProcessGroupState(int size, absl::Duration timeout)
      : size_(size), timeout_(timeout), buffers_(size), arrived_(size, false) {}

  // Rank `rank`'s part of collective number `sequence`.
  absl::Status Run(int rank, int64_t sequence, const CollectiveArgs& args, const void* send,
                   void* recv) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (aborted_) return abort_status_;
      if (waiting_ == 0) {
        args_ = args;
        first_rank_ = rank;
      } else if (!(args == args_)) {
        const std::string message = MismatchMessage(sequence, first_rank_, args_, rank, args);
        AbortLocked(message);
        return absl::InvalidArgumentError(message);
      }
      buffers_[rank] = {send, recv};
      arrived_[rank] = true;
      RETURN_IF_ERROR(ArriveLocked(lock, rank, sequence));
    }
    Work(rank);
    std::unique_lock<std::mutex> lock(mu_);
    // Not abortable: returning early would let this rank's caller reuse
    // buffers another rank may still be writing.
    const uint64_t generation = generation_;
    if (++waiting_ == size_) {
      PassLocked();
    } else {
      cv_.wait(lock, [&] { return generation_ != generation; });
    }
    return absl::OkStatus();
  }

  void Abort(absl::string_view reason) {
    std::lock_guard<std::mutex> lock(mu_);
    AbortLocked(reason);
  }

 private:
  // The first barrier: waits until every rank has registered its buffers,
  // the group is aborted, or the timeout passes.
  absl::Status ArriveLocked(std::unique_lock<std::mutex>& lock, int rank, int64_t sequence)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const uint64_t generation = generation_;
    if (++waiting_ == size_) {
      std::fill(arrived_.begin(), arrived_.end(), false);
      PassLocked();
      return absl::OkStatus();
    }
    const auto passed = [&] { return generation_ != generation || aborted_; };
    if (timeout_ == absl::ZeroDuration()) {
      cv_.wait(lock, passed);
    } else if (!cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout_), passed)) {
      std::vector<int> missing;
      for (int r = 0; r < size_; ++r) {
        if (!arrived_[r]) missing.push_back(r);
      }
      const std::string message = absl::StrCat(
          "rank ", rank, " waited ", absl::FormatDuration(timeout_), " in ", args_.Describe(),
          " (collective #", sequence, ") for rank(s) ", absl::StrJoin(missing, ", "));
      AbortLocked(message);
      return absl::DeadlineExceededError(message);
    }
    if (generation_ != generation) return absl::OkStatus();
    return abort_status_;
  }

  // Releases the ranks waiting at the current barrier.
  void PassLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    waiting_ = 0;
    ++generation_;
    cv_.notify_all();
  }

  void AbortLocked(absl::string_view reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (aborted_) return;
    aborted_ = true;
    abort_status_ = absl::AbortedError(
        absl::StrCat("in-process communicator group of ", size_, " ranks aborted: ", reason));
    cv_.notify_all();
  }

  // This rank's share of the collective registered in args_ and buffers_.
  // REQUIRES: every rank has passed the first barrier and none the second.
  void Work(int rank) {
    const CollectiveArgs& args = args_;
    const int64_t element = kernels::DTypeSize(args.dtype);
    switch (args.op) {
      case Collective::kAllReduceSum:
        SumSlice(args.dtype, buffers_, args.count * rank / size_,
                 args.count * (rank + 1) / size_);
        return;
      case Collective::kAllGather: {
        // Rank `rank`'s block of every rank's output.
        const size_t bytes = static_cast<size_t>(args.count * element);
        const void* src = buffers_[rank].send;
        for (const RankBuffers& b : buffers_) {
          void* dst = static_cast<char*>(b.recv) + rank * bytes;
          if (dst != src && bytes > 0) std::memcpy(dst, src, bytes);
        }
        return;
      }
      case Collective::kBroadcast:
        if (rank != args.root && args.count > 0) {
          std::memcpy(buffers_[rank].recv, buffers_[args.root].recv,
                      static_cast<size_t>(args.count * element));
        }
        return;
    }
  }

  // Constant after construction.
  const int size_;
  const absl::Duration timeout_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool aborted_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status abort_status_ ABSL_GUARDED_BY(mu_);
  // Ranks at the current barrier, and barriers passed so far.
  int waiting_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  // The current collective, as its first rank to arrive called it. Written
  // under mu_ before the first barrier; read without it between the two.
  CollectiveArgs args_;
  int first_rank_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<RankBuffers> buffers_;  // [size]; like args_
  std::vector<bool> arrived_ ABSL_GUARDED_BY(mu_);  // [size], for the timeout message
};

absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> InProcessCommunicator::CreateGroup(
    const InProcessGroupOptions& options) {
  if (options.size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("in-process group size must be >= 1, got ", options.size));
  }
  if (options.timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "in-process group timeout must be >= 0, got ", absl::FormatDuration(options.timeout)));
  }
  auto state = std::make_shared<InProcessGroupState>(options.size, options.timeout);
  std::vector<std::unique_ptr<Communicator>> group;
  for (int rank = 0; rank < options.size; ++rank) {
    group.push_back(
        std::unique_ptr<Communicator>(new InProcessCommunicator(state, rank, options.size)));
  }
  return group;
}

InProcessCommunicator::InProcessCommunicator(std::shared_ptr<InProcessGroupState> state, int rank,
                                             int size)
    : state_(std::move(state)), rank_(rank), size_(size) {}

InProcessCommunicator::~InProcessCommunicator() {
  state_->Abort(absl::StrCat("rank ", rank_, "'s communicator was destroyed"));
}

absl::Status InProcessCommunicator::AllReduceSum(const void* send, void* recv, int64_t count,
                                                 DType dtype) {
  return Run({.op = Collective::kAllReduceSum, .dtype = dtype, .count = count}, send, recv);
}

absl::Status InProcessCommunicator::AllGather(const void* send, void* recv, int64_t count,
                                              DType dtype) {
  return Run({.op = Collective::kAllGather, .dtype = dtype, .count = count}, send, recv);
}

absl::Status InProcessCommunicator::Broadcast(void* buffer, int64_t count, DType dtype, int root) {
  return Run({.op = Collective::kBroadcast, .dtype = dtype, .count = count, .root = root}, buffer,
             buffer);
}

void InProcessCommunicator::Abort(absl::string_view reason) { state_->Abort(reason); }

absl::Status InProcessCommunicator::Run(const CollectiveArgs& args, const void* send, void* recv) {
  const int64_t sequence = sequence_++;
  if (absl::Status status = ValidateCollective(args, send, recv, rank_, size_); !status.ok()) {
    state_->Abort(status.message());
    return status;
  }
  return state_->Run(rank_, sequence, args, send, recv);
}

}  // namespace kestrel::parallel
