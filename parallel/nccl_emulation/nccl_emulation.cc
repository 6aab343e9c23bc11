// The emulated NCCL of nccl.h: the ranks of a communicator are threads of
// this process meeting at a barrier per collective (a "clique" per unique
// id); the last rank to arrive moves the data for all of them.
#include <nccl.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kernels/dtype.h"

namespace {

using kestrel::kernels::Bf16ToF32;
using kestrel::kernels::F16ToF32;
using kestrel::kernels::F32ToBf16;
using kestrel::kernels::F32ToF16;

thread_local std::string t_last_error;

ncclResult_t Fail(ncclResult_t result, std::string message) {
  t_last_error = std::move(message);
  return result;
}

enum class Kind { kAllReduce, kAllGather, kBroadcast };

const char* KindName(Kind kind) {
  switch (kind) {
    case Kind::kAllReduce: return "ncclAllReduce";
    case Kind::kAllGather: return "ncclAllGather";
    case Kind::kBroadcast: return "ncclBroadcast";
  }
  return "?";  // unreachable: every enumerator is handled above
}

// Bytes per element; 0 for a value outside ncclDataType_t.
size_t TypeSize(ncclDataType_t type) {
  switch (type) {
    case ncclInt8:
    case ncclUint8:
    case ncclFloat8e4m3:
    case ncclFloat8e5m2: return 1;
    case ncclFloat16:
    case ncclBfloat16: return 2;
    case ncclInt32:
    case ncclUint32:
    case ncclFloat32: return 4;
    case ncclInt64:
    case ncclUint64:
    case ncclFloat64: return 8;
    case ncclNumTypes: return 0;
  }
  return 0;
}

// One rank's call of the current collective.
struct Call {
  Kind kind = Kind::kAllReduce;
  ncclDataType_t type = ncclFloat32;
  size_t count = 0;
  int root = 0;
  const void* send = nullptr;
  void* recv = nullptr;

  std::string Describe() const {
    std::string s = std::string(KindName(kind)) + " of " + std::to_string(count) +
                    " elements of type " + std::to_string(static_cast<int>(type));
    if (kind == Kind::kBroadcast) s += " from root " + std::to_string(root);
    return s;
  }
  bool Matches(const Call& o) const {
    return kind == o.kind && type == o.type && count == o.count && root == o.root;
  }
};

// The ranks of one unique id. Every field is guarded by mu.
struct Clique {
  explicit Clique(int n) : nranks(n), joined(n, false), calls(n) {}

  std::mutex mu;
  std::condition_variable cv;
  const int nranks;
  std::vector<bool> joined;  // [nranks]
  int num_joined = 0;
  // ncclRemoteError (a rank aborted or destroyed its communicator) or
  // ncclInvalidUsage (a mismatch); after it every collective fails.
  ncclResult_t failure = ncclSuccess;
  std::string failure_message;
  // The current collective: ranks arrived, barriers passed, each rank's call.
  int arrived = 0;
  uint64_t generation = 0;
  int first_rank = 0;
  std::vector<Call> calls;  // [nranks]

  void FailLocked(ncclResult_t result, std::string message) {
    if (failure != ncclSuccess) return;
    failure = result;
    failure_message = std::move(message);
    cv.notify_all();
  }
};

// Cliques whose ranks are still joining, by unique id.
struct Registry {
  std::mutex mu;
  std::map<std::string, std::shared_ptr<Clique>> joining;
  uint64_t next_id = 1;
};

Registry& GetRegistry() {
  static Registry* registry = new Registry;
  return *registry;
}

float Rounded(float x, ncclDataType_t type) {
  switch (type) {
    case ncclBfloat16: return Bf16ToF32(F32ToBf16(x));
    case ncclFloat16: return F16ToF32(F32ToF16(x));
    default: return x;
  }
}

float Load(const void* data, ncclDataType_t type, size_t i) {
  switch (type) {
    case ncclBfloat16: return Bf16ToF32(static_cast<const uint16_t*>(data)[i]);
    case ncclFloat16: return F16ToF32(static_cast<const uint16_t*>(data)[i]);
    default: return static_cast<const float*>(data)[i];
  }
}

void Store(void* data, ncclDataType_t type, size_t i, float v) {
  switch (type) {
    case ncclBfloat16: static_cast<uint16_t*>(data)[i] = F32ToBf16(v); return;
    case ncclFloat16: static_cast<uint16_t*>(data)[i] = F32ToF16(v); return;
    default: static_cast<float*>(data)[i] = v; return;
  }
}

// Moves the data of a collective every rank has joined. REQUIRES: c.mu held.
void Execute(Clique& c) {
  const Call& call = c.calls[c.first_rank];
  const size_t bytes = call.count * TypeSize(call.type);
  switch (call.kind) {
    case Kind::kAllReduce: {
      // Sum first, then write: buffers may be in place.
      std::vector<float> sum(call.count);
      for (size_t i = 0; i < call.count; ++i) {
        float acc = Load(c.calls[0].send, call.type, i);
        for (int r = 1; r < c.nranks; ++r) {
          acc = Rounded(acc + Load(c.calls[r].send, call.type, i), call.type);
        }
        sum[i] = acc;
      }
      for (const Call& rank : c.calls) {
        for (size_t i = 0; i < call.count; ++i) Store(rank.recv, call.type, i, sum[i]);
      }
      return;
    }
    case Kind::kAllGather:
      for (int r = 0; r < c.nranks; ++r) {
        for (const Call& rank : c.calls) {
          void* dst = static_cast<char*>(rank.recv) + r * bytes;
          if (dst != c.calls[r].send && bytes > 0) std::memcpy(dst, c.calls[r].send, bytes);
        }
      }
      return;
    case Kind::kBroadcast: {
      const void* src = c.calls[call.root].send;
      for (const Call& rank : c.calls) {
        if (rank.recv != src && bytes > 0) std::memcpy(rank.recv, src, bytes);
      }
      return;
    }
  }
}

}  // namespace

struct ncclComm {
  std::shared_ptr<Clique> clique;
  int rank = 0;
};

namespace {

// One rank's part of a collective: validate, meet the other ranks, and
// (last to arrive) move everyone's data.
ncclResult_t RunCollective(const Call& call, ncclComm_t comm, cudaStream_t stream) {
  const std::string what = KindName(call.kind);
  if (comm == nullptr) return Fail(ncclInvalidArgument, what + ": null communicator");
  if (TypeSize(call.type) == 0) return Fail(ncclInvalidArgument, what + ": invalid data type");
  if (call.count > 0 && (call.send == nullptr || call.recv == nullptr)) {
    return Fail(ncclInvalidArgument, what + ": null buffer");
  }
  if (cudaStreamQuery(stream) != cudaSuccess) {
    (void)cudaGetLastError();  // ours to report, not a later launch's
    return Fail(ncclInvalidArgument, what + ": invalid stream");
  }
  Clique& c = *comm->clique;
  if (call.kind == Kind::kBroadcast && (call.root < 0 || call.root >= c.nranks)) {
    return Fail(ncclInvalidArgument, what + ": root " + std::to_string(call.root) +
                                         " outside [0, " + std::to_string(c.nranks) + ")");
  }
  std::unique_lock<std::mutex> lock(c.mu);
  if (c.failure != ncclSuccess) return Fail(c.failure, c.failure_message);
  if (c.arrived == 0) {
    c.first_rank = comm->rank;
  } else if (!call.Matches(c.calls[c.first_rank])) {
    c.FailLocked(ncclInvalidUsage, "mismatched collective: rank " + std::to_string(c.first_rank) +
                                       " called " + c.calls[c.first_rank].Describe() +
                                       ", rank " + std::to_string(comm->rank) + " called " +
                                       call.Describe());
    return Fail(c.failure, c.failure_message);
  }
  c.calls[comm->rank] = call;
  if (++c.arrived == c.nranks) {
    Execute(c);
    c.arrived = 0;
    ++c.generation;
    c.cv.notify_all();
    return ncclSuccess;
  }
  const uint64_t generation = c.generation;
  c.cv.wait(lock, [&] { return c.generation != generation || c.failure != ncclSuccess; });
  if (c.generation != generation) return ncclSuccess;
  return Fail(c.failure, c.failure_message);
}

// Ends `comm`: the other ranks' pending and later collectives fail.
ncclResult_t EndComm(ncclComm_t comm, const char* how) {
  if (comm == nullptr) return Fail(ncclInvalidArgument, std::string(how) + ": null communicator");
  {
    Clique& c = *comm->clique;
    std::lock_guard<std::mutex> lock(c.mu);
    c.FailLocked(ncclRemoteError,
                 "rank " + std::to_string(comm->rank) + " ended its communicator (" + how + ")");
  }
  delete comm;
  return ncclSuccess;
}

}  // namespace

const char* ncclGetErrorString(ncclResult_t result) {
  switch (result) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error";
    case ncclSystemError: return "unhandled system error";
    case ncclInternalError: return "internal error";
    case ncclInvalidArgument: return "invalid argument";
    case ncclInvalidUsage: return "invalid usage";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
    case ncclNumResults: break;
  }
  return "unknown result code";
}

const char* ncclGetLastError(ncclComm_t) { return t_last_error.c_str(); }

ncclResult_t ncclGetUniqueId(ncclUniqueId* unique_id) {
  if (unique_id == nullptr) return Fail(ncclInvalidArgument, "ncclGetUniqueId: null id");
  Registry& registry = GetRegistry();
  std::lock_guard<std::mutex> lock(registry.mu);
  std::memset(unique_id->internal, 0, sizeof unique_id->internal);
  std::snprintf(unique_id->internal, sizeof unique_id->internal, "kestrel-nccl-emulation-%llu",
                static_cast<unsigned long long>(registry.next_id++));
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId comm_id, int rank) {
  if (comm == nullptr) return Fail(ncclInvalidArgument, "ncclCommInitRank: null comm");
  *comm = nullptr;
  if (nranks < 1 || rank < 0 || rank >= nranks) {
    return Fail(ncclInvalidArgument, "ncclCommInitRank: rank " + std::to_string(rank) +
                                         " of " + std::to_string(nranks));
  }
  const std::string key(comm_id.internal, sizeof comm_id.internal);
  std::shared_ptr<Clique> clique;
  {
    Registry& registry = GetRegistry();
    std::lock_guard<std::mutex> lock(registry.mu);
    std::shared_ptr<Clique>& entry = registry.joining[key];
    if (entry == nullptr) entry = std::make_shared<Clique>(nranks);
    clique = entry;
    std::lock_guard<std::mutex> clique_lock(clique->mu);
    if (clique->nranks != nranks) {
      return Fail(ncclInvalidArgument, "ncclCommInitRank: nranks " + std::to_string(nranks) +
                                           ", other ranks of this id said " +
                                           std::to_string(clique->nranks));
    }
    if (clique->joined[rank]) {
      return Fail(ncclInvalidUsage,
                  "ncclCommInitRank: rank " + std::to_string(rank) + " joined twice");
    }
    clique->joined[rank] = true;
    if (++clique->num_joined == nranks) {
      registry.joining.erase(key);  // the id is used up
      clique->cv.notify_all();
    }
  }
  std::unique_lock<std::mutex> lock(clique->mu);
  clique->cv.wait(lock, [&] {
    return clique->num_joined == clique->nranks || clique->failure != ncclSuccess;
  });
  if (clique->num_joined != clique->nranks) return Fail(clique->failure, clique->failure_message);
  *comm = new ncclComm{clique, rank};
  return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) { return EndComm(comm, "ncclCommDestroy"); }

ncclResult_t ncclCommAbort(ncclComm_t comm) { return EndComm(comm, "ncclCommAbort"); }

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* async_error) {
  if (comm == nullptr || async_error == nullptr) {
    return Fail(ncclInvalidArgument, "ncclCommGetAsyncError: null argument");
  }
  std::lock_guard<std::mutex> lock(comm->clique->mu);
  *async_error = comm->clique->failure;
  return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count,
                           ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm,
                           cudaStream_t stream) {
  if (op != ncclSum) return Fail(ncclInvalidArgument, "ncclAllReduce: only ncclSum is emulated");
  if (datatype != ncclFloat32 && datatype != ncclFloat16 && datatype != ncclBfloat16) {
    return Fail(ncclInvalidArgument,
                "ncclAllReduce: only ncclFloat32, ncclFloat16 and ncclBfloat16 are emulated");
  }
  return RunCollective({.kind = Kind::kAllReduce, .type = datatype, .count = count,
                        .send = sendbuff, .recv = recvbuff},
                       comm, stream);
}

ncclResult_t ncclAllGather(const void* sendbuff, void* recvbuff, size_t sendcount,
                           ncclDataType_t datatype, ncclComm_t comm, cudaStream_t stream) {
  return RunCollective({.kind = Kind::kAllGather, .type = datatype, .count = sendcount,
                        .send = sendbuff, .recv = recvbuff},
                       comm, stream);
}

ncclResult_t ncclBroadcast(const void* sendbuff, void* recvbuff, size_t count,
                           ncclDataType_t datatype, int root, ncclComm_t comm,
                           cudaStream_t stream) {
  return RunCollective({.kind = Kind::kBroadcast, .type = datatype, .count = count, .root = root,
                        .send = sendbuff, .recv = recvbuff},
                       comm, stream);
}
