// Sampling on the CPU: one token per SampleRow from its logits row (bans,
// repetition/presence/frequency penalties, logit bias, greedy or
// temperature with top-k/top-p/min-p, logprobs and top logprobs), rows in
// parallel on the thread pool. The semantics are in kernels/ops.h
// (SampleRow, TokenAdjust, SampleParams).
#ifndef KESTREL_KERNELS_CPU_SAMPLING_H_
#define KESTREL_KERNELS_CPU_SAMPLING_H_

#include "absl/status/status.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/ops.h"

namespace kestrel::kernels::cpu {

// Errors (InvalidArgument naming the row and field): a logits_row outside
// [0, num_logits_rows), an adjust range outside [0, num_adjust), a token
// outside the vocabulary, num_top_logprobs above max_top_logprobs. `pool`
// may be null.
absl::Status Sample(const SampleParams& p, ThreadPool* pool);

}  // namespace kestrel::kernels::cpu

#endif  // KESTREL_KERNELS_CPU_SAMPLING_H_
