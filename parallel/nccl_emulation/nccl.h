// The slice of NCCL that parallel/nccl_communicator.cc calls, for the
// emulated CUDA build (kernels/cuda/emulation), where "device" memory is
// host memory and streams are synchronous. Found as <nccl.h> only by
// targets built against the emulation; the nvcc build gets NVIDIA's header.
//
// Types, enumerator values and signatures are those of NCCL 2.28, so
// nccl_communicator.cc compiles unchanged against either. The ranks of a
// communicator are threads of this process (any number of them may use
// emulated device 0). Behaviour, as NCCL documents it except where noted:
// - ncclCommInitRank blocks until all nranks ranks of the unique id joined.
// - A collective blocks its caller until every rank has made its matching
//   call (the k-th collective of each rank), then completes: the streams
//   are synchronous. Sums run in rank order, in F32 for ncclFloat32 and,
//   like NCCL's reductions, rounded to the element type after each
//   addition for ncclFloat16 / ncclBfloat16.
// - Emulation only: ranks whose k-th calls differ (operation, type, count,
//   root) all fail with ncclInvalidUsage and ncclGetLastError says how,
//   instead of hanging or corrupting memory; and when one rank's
//   communicator is aborted or destroyed, the other ranks' pending and
//   later collectives fail with ncclRemoteError instead of hanging. After
//   either, the communicators can only be aborted or destroyed.
#ifndef KESTREL_PARALLEL_NCCL_EMULATION_NCCL_H_
#define KESTREL_PARALLEL_NCCL_EMULATION_NCCL_H_

#include <cstddef>

#include "kernels/cuda/cuda_compat.h"

#define NCCL_MAJOR 2
#define NCCL_MINOR 28
#define NCCL_UNIQUE_ID_BYTES 128

typedef struct ncclComm* ncclComm_t;
typedef struct { char internal[NCCL_UNIQUE_ID_BYTES]; } ncclUniqueId;

typedef enum {
  ncclSuccess = 0,
  ncclUnhandledCudaError = 1,
  ncclSystemError = 2,
  ncclInternalError = 3,
  ncclInvalidArgument = 4,
  ncclInvalidUsage = 5,
  ncclRemoteError = 6,
  ncclInProgress = 7,
  ncclNumResults = 8
} ncclResult_t;

// Only ncclSum is supported here.
typedef enum { ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3, ncclAvg = 4 } ncclRedOp_t;

typedef enum {
  ncclInt8 = 0, ncclChar = 0,
  ncclUint8 = 1,
  ncclInt32 = 2, ncclInt = 2,
  ncclUint32 = 3,
  ncclInt64 = 4,
  ncclUint64 = 5,
  ncclFloat16 = 6, ncclHalf = 6,
  ncclFloat32 = 7, ncclFloat = 7,
  ncclFloat64 = 8, ncclDouble = 8,
  ncclBfloat16 = 9,
  ncclFloat8e4m3 = 10,
  ncclFloat8e5m2 = 11,
  ncclNumTypes = 12
} ncclDataType_t;

const char* ncclGetErrorString(ncclResult_t result);
// What went wrong in the last failed call on this thread ("" if none).
const char* ncclGetLastError(ncclComm_t comm);

// A fresh id (unique within the process).
ncclResult_t ncclGetUniqueId(ncclUniqueId* unique_id);
// ncclInvalidArgument for a null comm, nranks < 1, rank outside [0, nranks),
// or an id whose other ranks were created with another nranks;
// ncclInvalidUsage for a rank that already joined.
ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId comm_id, int rank);
ncclResult_t ncclCommDestroy(ncclComm_t comm);
ncclResult_t ncclCommAbort(ncclComm_t comm);
// ncclRemoteError once another rank aborted or destroyed its communicator,
// ncclInvalidUsage after a mismatch, else ncclSuccess.
ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* async_error);

// Sums: ncclFloat32, ncclFloat16, ncclBfloat16 only (ncclInvalidArgument
// otherwise, and for an op other than ncclSum). In place when
// sendbuff == recvbuff.
ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count,
                           ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm,
                           cudaStream_t stream);
// recvbuff[r * sendcount + i] = sendbuff of rank r [i]; any type.
ncclResult_t ncclAllGather(const void* sendbuff, void* recvbuff, size_t sendcount,
                           ncclDataType_t datatype, ncclComm_t comm, cudaStream_t stream);
// recvbuff = root's sendbuff on every rank; any type.
ncclResult_t ncclBroadcast(const void* sendbuff, void* recvbuff, size_t count,
                           ncclDataType_t datatype, int root, ncclComm_t comm,
                           cudaStream_t stream);

#endif  // KESTREL_PARALLEL_NCCL_EMULATION_NCCL_H_
