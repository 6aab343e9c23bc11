#include "model/shard.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace kestrel::model {

absl::StatusOr<Shard> ComputeShard(const ModelConfig& c, int rank, int size) {
  if (size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("tensor_parallel_size must be >= 1, got ", size));
  }
  if (rank < 0 || rank >= size) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor-parallel rank must be in [0, ", size, "), got ", rank));
  }
  auto indivisible = [&](const char* field, int64_t value, const char* extra) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor_parallel_size ", size, " does not divide the model's ", field, " (", value, ")",
        extra));
  };
  const int64_t heads = c.num_attention_heads, kv = c.num_key_value_heads;
  if (heads % size != 0) return indivisible("num_attention_heads", heads, "");
  if (c.intermediate_size % size != 0) {
    return indivisible("intermediate_size", c.intermediate_size, "");
  }
  if (kv >= size ? kv % size != 0 : size % kv != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor_parallel_size ", size, " and the model's num_key_value_heads (", kv,
        ") must divide one another (KV heads are split, or replicated when fewer than ranks)"));
  }
  Shard s;
  s.rank = rank;
  s.size = size;
  s.num_q_heads = heads / size;
  s.q_head_begin = rank * s.num_q_heads;
  if (kv >= size) {
    s.num_kv_heads = kv / size;
    s.kv_head_begin = rank * s.num_kv_heads;
  } else {
    // size / kv ranks share each KV head; the query heads of rank r all
    // read KV head r / (size / kv) (heads / kv queries per KV head).
    s.num_kv_heads = 1;
    s.kv_head_begin = rank / (size / kv);
  }
  s.intermediate = c.intermediate_size / size;
  s.intermediate_begin = rank * s.intermediate;
  s.vocab_begin = c.vocab_size * rank / size;
  s.vocab_count = c.vocab_size * (rank + 1) / size - s.vocab_begin;
  return s;
}

}  // namespace kestrel::model
