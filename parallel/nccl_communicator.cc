#include "parallel/nccl_communicator.h"

#include <nccl.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/cuda/cuda_status.h"

namespace kestrel::parallel {

using kernels::DType;

namespace {

// OK for ncclSuccess; otherwise "WHAT: NCCL's description: its last error".
absl::Status NcclStatus(ncclResult_t result, ncclComm_t comm, absl::string_view what) {
  if (result == ncclSuccess) return absl::OkStatus();
  std::string message = absl::StrCat(what, ": ", ncclGetErrorString(result));
  const char* detail = ncclGetLastError(comm);
  if (detail != nullptr && detail[0] != '\0') absl::StrAppend(&message, ": ", detail);
  switch (result) {
    case ncclInvalidArgument:
    case ncclInvalidUsage:
      return absl::InvalidArgumentError(message);
    default:
      return absl::InternalError(message);
  }
}

// The NCCL type of an all-reduce. REQUIRES: ValidateCollective accepted it.
ncclDataType_t SumType(DType dtype) {
  switch (dtype) {
    case DType::kF32: return ncclFloat32;
    case DType::kBF16: return ncclBfloat16;
    case DType::kF16: return ncclFloat16;
    default: std::abort();  // ValidateCollective admits only the types above
  }
}

// Polls of a collective's stream before the waiting thread starts sleeping
// between polls: most collectives end within them.
constexpr int kSpinPolls = 1000;
constexpr auto kPollSleep = std::chrono::microseconds(20);

}  // namespace

struct NcclCommunicator::Handle {
  // Held while calling NCCL with `comm`, never while waiting for a stream,
  // so Abort can try_lock it and abort a communicator nobody is using.
  std::mutex mu;
  ncclComm_t comm ABSL_GUARDED_BY(mu) = nullptr;

  // ncclCommAbort, once.
  void AbortLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (comm == nullptr) return;
    (void)ncclCommAbort(comm);  // nothing to do about its failure: the group is gone
    comm = nullptr;
  }
};

// What the ranks of one group share: the abort state, the live members (so
// Abort reaches every rank's ncclComm_t) and a ledger of each collective's
// arguments, so ranks that disagree get an error naming both instead of
// NCCL hanging or reading past a buffer.
class NcclGroupState {
 public:
  NcclGroupState(int size, absl::Duration timeout) : size_(size), timeout_(timeout) {}

  int size() const { return size_; }
  absl::Duration timeout() const { return timeout_; }

  void Register(NcclCommunicator* member) {
    std::lock_guard<std::mutex> lock(mu_);
    members_.push_back(member);
  }
  void Deregister(NcclCommunicator* member) {
    std::lock_guard<std::mutex> lock(mu_);
    std::erase(members_, member);
  }

  // Rank `rank` is about to run collective `sequence` with `args`: checks
  // them against the first rank's (aborting the group on a mismatch).
  absl::Status Record(int rank, int64_t sequence, const CollectiveArgs& args) {
    std::lock_guard<std::mutex> lock(mu_);
    if (aborted_.load(std::memory_order_relaxed)) return abort_status_;
    auto [it, first] = ledger_.try_emplace(sequence, Entry{rank, args, 0});
    Entry& entry = it->second;
    if (!first && !(entry.args == args)) {
      const std::string message = MismatchMessage(sequence, entry.rank, entry.args, rank, args);
      AbortLocked(message);
      return absl::InvalidArgumentError(message);
    }
    if (++entry.seen == size_) ledger_.erase(it);
    return absl::OkStatus();
  }

  bool aborted() const { return aborted_.load(std::memory_order_acquire); }

  absl::Status abort_status() {
    std::lock_guard<std::mutex> lock(mu_);
    return abort_status_;
  }

  void Abort(absl::string_view reason) {
    std::lock_guard<std::mutex> lock(mu_);
    AbortLocked(reason);
  }

 private:
  struct Entry {
    int rank;  // the first rank to record this collective
    CollectiveArgs args;
    int seen;  // ranks that recorded it
  };

  void AbortLocked(absl::string_view reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (aborted_.load(std::memory_order_relaxed)) return;
    abort_status_ = absl::AbortedError(
        absl::StrCat("NCCL communicator group of ", size_, " ranks aborted: ", reason));
    aborted_.store(true, std::memory_order_release);
    // A member whose lock is taken is inside an NCCL call; it aborts its
    // communicator itself when it sees the flag (try_lock: never wait here).
    for (NcclCommunicator* member : members_) {
      NcclCommunicator::Handle& handle = *member->handle_;
      if (handle.mu.try_lock()) {
        handle.AbortLocked();
        handle.mu.unlock();
      }
    }
  }

  // Constant after construction.
  const int size_;
  const absl::Duration timeout_;

  std::mutex mu_;
  // Written under mu_; read without it by ranks polling their stream.
  std::atomic<bool> aborted_{false};
  absl::Status abort_status_ ABSL_GUARDED_BY(mu_);
  std::vector<NcclCommunicator*> members_ ABSL_GUARDED_BY(mu_);  // not owned
  // Collectives not every rank has recorded yet, by sequence number.
  std::map<int64_t, Entry> ledger_ ABSL_GUARDED_BY(mu_);
};

absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> NcclCommunicator::CreateGroup(
    const NcclGroupOptions& options) {
  const int size = options.size;
  if (size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("NCCL group size must be >= 1, got ", size));
  }
  if (!options.devices.empty() && static_cast<int>(options.devices.size()) != size) {
    return absl::InvalidArgumentError(absl::StrCat("NcclGroupOptions.devices has ",
                                                   options.devices.size(), " entries for ", size,
                                                   " ranks"));
  }
  if (!options.streams.empty() && static_cast<int>(options.streams.size()) != size) {
    return absl::InvalidArgumentError(absl::StrCat("NcclGroupOptions.streams has ",
                                                   options.streams.size(), " entries for ", size,
                                                   " ranks"));
  }
  if (options.timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "NCCL group timeout must be >= 0, got ", absl::FormatDuration(options.timeout)));
  }
  int device_count = 0;
  RETURN_IF_ERROR(cuda::CudaStatus(cudaGetDeviceCount(&device_count), "counting CUDA devices"));
  if (device_count == 0) return absl::UnavailableError("NCCL group: no CUDA device");
  std::vector<int> devices = options.devices;
  for (int rank = 0; rank < size; ++rank) {
    if (options.devices.empty()) devices.push_back(rank);
    if (devices[rank] < 0 || devices[rank] >= device_count) {
      return absl::InvalidArgumentError(absl::StrCat(
          "rank ", rank, "'s CUDA device must be in [0, ", device_count, "), got ", devices[rank]));
    }
  }

  ncclUniqueId id;
  RETURN_IF_ERROR(NcclStatus(ncclGetUniqueId(&id), nullptr, "ncclGetUniqueId"));
  auto state = std::make_shared<NcclGroupState>(size, options.timeout);
  // Every step that can fail without NCCL happens here, on this thread:
  // once the ranks are inside ncclCommInitRank, one that never comes would
  // leave the others blocked.
  int previous_device = 0;
  RETURN_IF_ERROR(cuda::CudaStatus(cudaGetDevice(&previous_device), "cudaGetDevice"));
  std::vector<std::unique_ptr<NcclCommunicator>> members;
  absl::Status status;
  for (int rank = 0; rank < size && status.ok(); ++rank) {
    status = cuda::CudaStatus(cudaSetDevice(devices[rank]),
                              absl::StrCat("rank ", rank, ": cudaSetDevice(", devices[rank], ")"));
    cudaStream_t stream = options.streams.empty() ? nullptr : options.streams[rank];
    if (status.ok() && options.streams.empty()) {
      status = cuda::CudaStatus(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking),
                                absl::StrCat("rank ", rank, ": creating its stream"));
    }
    if (status.ok()) {
      members.push_back(std::unique_ptr<NcclCommunicator>(new NcclCommunicator(
          state, rank, size, devices[rank], stream, options.streams.empty())));
    }
  }
  if (status.ok()) {
    std::vector<absl::Status> statuses(size);
    std::vector<std::thread> threads;
    for (int rank = 0; rank < size; ++rank) {
      threads.emplace_back([&, rank] {
        NcclCommunicator& member = *members[rank];
        statuses[rank] = cuda::CudaStatus(cudaSetDevice(member.device_), "cudaSetDevice");
        if (!statuses[rank].ok()) return;  // checked above: does not happen
        ncclComm_t comm = nullptr;
        statuses[rank] = NcclStatus(ncclCommInitRank(&comm, size, id, rank), nullptr,
                                    absl::StrCat("ncclCommInitRank (rank ", rank, ")"));
        std::lock_guard<std::mutex> lock(member.handle_->mu);
        member.handle_->comm = comm;
      });
    }
    for (std::thread& thread : threads) thread.join();
    for (const absl::Status& s : statuses) status.Update(s);
  }
  (void)cudaSetDevice(previous_device);
  RETURN_IF_ERROR(status);

  // One all-reduce on every rank, so NCCL connects the ranks now.
  std::vector<absl::Status> statuses(size);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < size; ++rank) {
    threads.emplace_back([&, rank] {
      NcclCommunicator& member = *members[rank];
      statuses[rank] = cuda::CudaStatus(cudaSetDevice(member.device_), "cudaSetDevice");
      float* one = nullptr;
      if (statuses[rank].ok()) {
        statuses[rank] =
            cuda::CudaStatus(cudaMalloc(&one, sizeof(float)), "warm-up buffer");
      }
      if (statuses[rank].ok()) statuses[rank] = member.AllReduceSum(one, one, 1, DType::kF32);
      if (statuses[rank].ok()) {
        statuses[rank] = cuda::CudaStatus(cudaFree(one), "freeing the warm-up buffer");
      } else if (one != nullptr) {
        (void)cudaFree(one);
      }
      if (!statuses[rank].ok()) member.Abort(statuses[rank].message());
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const absl::Status& s : statuses) RETURN_IF_ERROR(s);

  std::vector<std::unique_ptr<Communicator>> group;
  for (auto& member : members) group.push_back(std::move(member));
  return group;
}

NcclCommunicator::NcclCommunicator(std::shared_ptr<NcclGroupState> state, int rank, int size,
                                   int device, cudaStream_t stream, bool owns_stream)
    : state_(std::move(state)),
      rank_(rank),
      size_(size),
      device_(device),
      stream_(stream),
      owns_stream_(owns_stream),
      handle_(std::make_unique<Handle>()) {
  state_->Register(this);
}

NcclCommunicator::~NcclCommunicator() {
  state_->Abort(absl::StrCat("rank ", rank_, "'s communicator was destroyed"));
  state_->Deregister(this);
  {
    std::lock_guard<std::mutex> lock(handle_->mu);
    handle_->AbortLocked();
  }
  if (owns_stream_) (void)cudaStreamDestroy(stream_);
}

absl::Status NcclCommunicator::AllReduceSum(const void* send, void* recv, int64_t count,
                                            DType dtype) {
  return Run({.op = Collective::kAllReduceSum, .dtype = dtype, .count = count}, send, recv);
}

absl::Status NcclCommunicator::AllGather(const void* send, void* recv, int64_t count,
                                         DType dtype) {
  return Run({.op = Collective::kAllGather, .dtype = dtype, .count = count}, send, recv);
}

absl::Status NcclCommunicator::Broadcast(void* buffer, int64_t count, DType dtype, int root) {
  return Run({.op = Collective::kBroadcast, .dtype = dtype, .count = count, .root = root}, buffer,
             buffer);
}

void NcclCommunicator::Abort(absl::string_view reason) { state_->Abort(reason); }

absl::Status NcclCommunicator::Run(const CollectiveArgs& args, const void* send, void* recv) {
  const int64_t sequence = sequence_++;
  if (absl::Status status = ValidateCollective(args, send, recv, rank_, size_); !status.ok()) {
    state_->Abort(status.message());
    return status;
  }
  RETURN_IF_ERROR(state_->Record(rank_, sequence, args));
  // For messages only: built when something failed.
  const auto what = [&] {
    return absl::StrCat(args.Describe(), " (collective #", sequence, ") on rank ", rank_);
  };
  absl::Status status;
  {
    std::lock_guard<std::mutex> lock(handle_->mu);
    if (handle_->comm == nullptr) return state_->abort_status();
    const cudaError_t set_device = cudaSetDevice(device_);
    if (set_device != cudaSuccess) status = cuda::CudaStatus(set_device, what());
    if (status.ok()) {
      // Gathers and broadcasts move bytes, so every dtype works.
      const size_t bytes = static_cast<size_t>(args.count * kernels::DTypeSize(args.dtype));
      ncclResult_t result = ncclSuccess;
      switch (args.op) {
        case Collective::kAllReduceSum:
          result = ncclAllReduce(send, recv, static_cast<size_t>(args.count), SumType(args.dtype),
                                 ncclSum, handle_->comm, stream_);
          break;
        case Collective::kAllGather:
          result = ncclAllGather(send, recv, bytes, ncclUint8, handle_->comm, stream_);
          break;
        case Collective::kBroadcast:
          result = ncclBroadcast(send, recv, bytes, ncclUint8, args.root, handle_->comm, stream_);
          break;
      }
      if (result != ncclSuccess) status = NcclStatus(result, handle_->comm, what());
    }
    if (!status.ok() && state_->aborted()) {
      // The failure is the abort's doing (the emulation ends a pending
      // collective when a peer aborts): report the abort's reason.
      handle_->AbortLocked();
      return state_->abort_status();
    }
  }
  if (!status.ok()) {
    state_->Abort(status.message());
    return status;
  }
  return WaitForStream(what);
}

absl::Status NcclCommunicator::WaitForStream(const std::function<std::string()>& what) {
  const auto start = std::chrono::steady_clock::now();
  const auto timeout = absl::ToChronoNanoseconds(state_->timeout());
  for (int polls = 0;; ++polls) {
    const cudaError_t query = cudaStreamQuery(stream_);
    if (query == cudaSuccess) return absl::OkStatus();
    absl::Status status;
    if (query != cudaErrorNotReady) status = cuda::CudaStatus(query, what());
    if (status.ok() && state_->aborted()) {
      std::lock_guard<std::mutex> lock(handle_->mu);
      handle_->AbortLocked();
      return state_->abort_status();
    }
    if (status.ok()) {
      std::lock_guard<std::mutex> lock(handle_->mu);
      ncclResult_t async_error = ncclSuccess;
      if (handle_->comm != nullptr &&
          ncclCommGetAsyncError(handle_->comm, &async_error) == ncclSuccess &&
          async_error != ncclSuccess && async_error != ncclInProgress) {
        status = NcclStatus(async_error, handle_->comm, what());
      }
    }
    if (status.ok() && timeout.count() > 0 && std::chrono::steady_clock::now() - start > timeout) {
      status = absl::DeadlineExceededError(absl::StrCat(
          what(), " did not complete within ", absl::FormatDuration(state_->timeout())));
    }
    if (!status.ok()) {
      state_->Abort(status.message());
      return status;
    }
    if (polls < kSpinPolls) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(kPollSleep);
    }
  }
}

}  // namespace kestrel::parallel
