#include "parallel/communicator.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace kestrel::parallel {

using kernels::DType;

const char* CollectiveName(Collective op) {
  switch (op) {
    case Collective::kAllReduceSum: return "AllReduceSum";
    case Collective::kAllGather: return "AllGather";
    case Collective::kBroadcast: return "Broadcast";
  }
  return "?";  // unreachable: every enumerator is handled above
}

std::string CollectiveArgs::Describe() const {
  std::string s = absl::StrCat(CollectiveName(op), " of ", count, " ", kernels::DTypeName(dtype),
                               " elements");
  if (op == Collective::kBroadcast) absl::StrAppend(&s, " from rank ", root);
  return s;
}

absl::Status ValidateCollective(const CollectiveArgs& args, const void* send, const void* recv,
                                int rank, int size) {
  const std::string who = absl::StrCat(CollectiveName(args.op), " on rank ", rank, " of ", size);
  if (args.count < 0) {
    return absl::InvalidArgumentError(absl::StrCat(who, ": count must be >= 0, got ", args.count));
  }
  if (args.op == Collective::kAllReduceSum && args.dtype != DType::kF32 &&
      args.dtype != DType::kBF16 && args.dtype != DType::kF16) {
    return absl::InvalidArgumentError(absl::StrCat(
        who, ": dtype must be F32, BF16 or F16, got ", kernels::DTypeName(args.dtype)));
  }
  if (args.op == Collective::kBroadcast && (args.root < 0 || args.root >= size)) {
    return absl::InvalidArgumentError(
        absl::StrCat(who, ": root must be in [0, ", size, "), got ", args.root));
  }
  if (args.count > 0 && (send == nullptr || recv == nullptr)) {
    return absl::InvalidArgumentError(absl::StrCat(who, ": null buffer for ", args.count,
                                                   " elements"));
  }
  return absl::OkStatus();
}

std::string MismatchMessage(int64_t sequence, int rank_a, const CollectiveArgs& a, int rank_b,
                            const CollectiveArgs& b) {
  return absl::StrCat("collective #", sequence, " mismatch: rank ", rank_a, " called ",
                      a.Describe(), ", rank ", rank_b, " called ", b.Describe());
}

}  // namespace kestrel::parallel
