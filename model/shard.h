// The tensor-parallel sharding rules (Megatron style, docs/parallel.md):
// which attention heads, KV heads, MLP columns and vocabulary rows one rank
// of N owns, and the checks that the model's shapes divide. Pure arithmetic
// over the config: the model runner turns a Shard into zero-copy views of
// the loaded weights (Matrix::RowSlice / ColSlice).
#ifndef KESTREL_MODEL_SHARD_H_
#define KESTREL_MODEL_SHARD_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "model/config.h"

namespace kestrel::model {

// One rank's part of the model. Ranges are [begin, begin + count).
struct Shard {
  int rank = 0;
  int size = 1;
  // Query heads: column-parallel q_proj rows and row-parallel o_proj columns.
  int64_t q_head_begin = 0;
  int64_t num_q_heads = 0;
  // KV heads: k_proj/v_proj rows and this rank's KV cache. When the model
  // has fewer KV heads than ranks (size % num_key_value_heads == 0), each
  // rank holds the one KV head its query heads read (replicated).
  int64_t kv_head_begin = 0;
  int64_t num_kv_heads = 0;
  // MLP: gate_proj/up_proj rows and down_proj columns.
  int64_t intermediate_begin = 0;
  int64_t intermediate = 0;
  // lm_head rows (vocabulary entries) whose logits this rank computes.
  int64_t vocab_begin = 0;
  int64_t vocab_count = 0;
};

// Rank `rank` of `size`. InvalidArgument naming the dimension and its value
// when a shape does not divide: num_attention_heads % size,
// intermediate_size % size, and num_key_value_heads % size (or
// size % num_key_value_heads when there are fewer KV heads than ranks).
// The vocabulary need not divide (rank r takes [V*r/size, V*(r+1)/size)).
// REQUIRES: nothing; size < 1 or rank outside [0, size) is an error.
absl::StatusOr<Shard> ComputeShard(const ModelConfig& config, int rank, int size);

}  // namespace kestrel::model

#endif  // KESTREL_MODEL_SHARD_H_
