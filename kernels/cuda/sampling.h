// Ops::Sample on the GPU: one token per SampleRow with exactly the semantics
// of the CPU sampler (kernels/cpu/sampling.cc): bans, repetition / presence /
// frequency penalties and logit bias in entry order; greedy; temperature with
// top-k, min-p and top-p; the draw from the row's host-supplied uniform;
// speculative verification of a draft token (accept_uniform, then a draw
// without the draft); logprobs and top-N logprobs. Host launcher; plain C++
// so callers need not use nvcc.
//
// Design: one thread block per row (grid-stride over rows, so the workspace
// bounds how many rows are in flight). The row is copied into the workspace
// and adjusted there; the logits are never written. A draw sorts only the
// candidates that can change its outcome: the first min(top_k, c) tokens of
// the CPU's order (likelihood, then id), where c counts the tokens whose
// probability relative to the most likely one is >= 2^-56. Smaller ones are
// exact no-ops in the CPU's double sums, because every running sum is >= 1/2.
// They are found by a radix select over (order key, id) bits (or by their
// probability), compacted in id order and sorted stably (a rank sort in
// shared memory up to 1024 of them, else an LSD radix sort in the workspace,
// 4 bits a pass); one thread then replays the CPU's sequential double sums
// over them, so the same uniform picks the same token (bit-exact in the
// emulated build; on a GPU exp(double) may differ from glibc's in the last
// ulp, which only matters for a uniform within ~1e-16 of a boundary).
// A draft is found by its rank (the entries that precede it in the CPU's
// order, counted across the block); the replay accepts or rejects it and
// draws without it as the CPU does. When a rejected draft was the most
// likely candidate, the running sums no longer start at 1, so candidates
// below 2^-56 may count: if the draw runs past the sorted ones, every
// candidate is sorted and the draw replayed (a rare, slower path).
#ifndef KESTREL_KERNELS_CUDA_SAMPLING_H_
#define KESTREL_KERNELS_CUDA_SAMPLING_H_

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/cuda_compat.h"
#include "kernels/ops.h"

namespace kestrel::cuda {

// kernels/cuda/device_error.h; not included here because its device helper
// does not compile for host-only users of this header.
struct DeviceError;

// Bytes of workspace Sample needs to keep `rows_in_flight` rows of `vocab`
// logits in flight at once (20 bytes per vocabulary entry and row: the
// adjusted row, and two key/id buffers for the sort). Returns 0 for
// non-positive arguments.
size_t SampleWorkspaceBytes(int64_t vocab, int64_t rows_in_flight);

// Draws one token per row of `p` (kernels/ops.h: SampleParams). Every pointer
// of `p` is device memory; `workspace` is device memory of `workspace_bytes`,
// 16-byte aligned, at least SampleWorkspaceBytes(p.vocab, 1); its contents
// need not be initialized. Rows run min(num_rows, workspace_bytes /
// SampleWorkspaceBytes(p.vocab, 1)) at a time.
//
// Returns cudaErrorInvalidValue for bad scalars (num_rows < 0, vocab outside
// [1, 2^31), logits_stride < vocab, num_logits_rows, num_adjust or
// max_top_logprobs < 0, null logits / rows / tokens, null adjust with
// num_adjust > 0, too small or misaligned workspace); otherwise the launch
// error. num_rows == 0 launches nothing.
//
// Errors in the device data (the host validates rows, so these are defence):
// - kRowIndex (index = the sample row): logits_row outside
//   [0, num_logits_rows) (value = logits_row, limit = num_logits_rows), an
//   adjust range outside [0, num_adjust] (value = the bad bound, limit =
//   num_adjust), or num_top_logprobs outside [0, max_top_logprobs] (value =
//   num_top_logprobs, limit = max_top_logprobs). The row's token becomes -1,
//   its logprob (if asked) NaN; its top logprobs are not written.
// - kDraftToken (index = the sample row): draft_token outside [-1, vocab)
//   (value = draft_token, limit = vocab). The row is treated as above.
// - kSampleToken (index = the adjust entry): a TokenAdjust token outside
//   [0, vocab). The entry is skipped; the row is sampled without it.
// Logprob outputs are written only for rows that ask, and only where the
// arrays are non-null (the CPU backend rejects null arrays on the host; here
// the rows are in device memory, so the caller must pass them whenever a row
// may ask). `error` may be null.
//
// Temperature must be 0 or positive and finite (the host validates it): the
// candidate reduction above relies on probabilities falling along the order.
cudaError_t Sample(const kernels::SampleParams& p, void* workspace, size_t workspace_bytes,
                   DeviceError* error, cudaStream_t stream);

}  // namespace kestrel::cuda

#endif  // KESTREL_KERNELS_CUDA_SAMPLING_H_
