// Paged attention on the CPU for mixed batches of prefill chunks and decodes
// (see PagedAttentionParams in kernels/ops.h for the semantics). Work is split
// over (sequence, kv heads, tile of 16 new tokens) on the thread pool; each
// query row runs a numerically stable online softmax over the keys it may
// see, 16 slots at a time through the block table, reading only valid slots.
// Design notes: docs/kernels.md.
#ifndef KESTREL_KERNELS_CPU_ATTENTION_H_
#define KESTREL_KERNELS_CPU_ATTENTION_H_

#include "absl/status/status.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/ops.h"

namespace kestrel::kernels::cpu {

// Validates p (pointers, strides, head counts, query_start monotone,
// context_lens >= n_new, block table entries in [0, num_blocks) for the
// blocks that are read) and runs it on `pool` (null: calling thread).
// `isa` forces the vector variant of the inner loops (tests); kAuto picks the
// best, an ISA the CPU lacks is an error.
absl::Status PagedAttention(const PagedAttentionParams& p, ThreadPool* pool,
                            Isa isa = Isa::kAuto);

}  // namespace kestrel::kernels::cpu

#endif  // KESTREL_KERNELS_CPU_ATTENTION_H_
