// The model's weights, one struct per layer, pointing into a loaded
// checkpoint and checked against the config: every tensor the architecture
// needs is present with the right shape and a usable dtype, and nothing
// unexpected is (a stray bias would mean the config and checkpoint disagree).
#ifndef KESTREL_MODEL_WEIGHTS_H_
#define KESTREL_MODEL_WEIGHTS_H_

#include <cstdint>
#include <memory>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "model/config.h"
#include "kernels/dtype.h"
#include "model/safetensors.h"

namespace kestrel::model {

// A 2-D weight matrix in the checkpoint's dtype, row-major
// [rows, cols] = [out_features, in_features] (the PyTorch nn.Linear layout,
// so y = x W^T), with a row stride `ld` in elements (>= cols). A slice is a
// view: a tensor-parallel shard of a column-parallel layer (q/k/v,
// gate/up) takes rows, of a row-parallel one (o_proj, down_proj) columns,
// and neither copies. Points into the checkpoint's memory (or, quantized,
// into ModelWeights' own int8 copy); not owned.
//
// An int8 matrix (dtype kI8: --quantization=int8, or a compressed-tensors
// int8 checkpoint) has one scale per row
// (output channel): W[r, :] ~= scales[r] * data[r, :]. A row slice takes
// its rows' scales; a column slice keeps them, and is still exact for the
// int8 GEMM, which needs nothing else precomputed from the weights
// (docs/kernels.md#int8-weights).
struct Matrix {
  const void* data = nullptr;
  kernels::DType dtype = kernels::DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t ld = 0;
  const float* scales = nullptr;  // [rows], kI8 only; not owned

  // Rows [begin, end). REQUIRES: 0 <= begin <= end <= rows.
  Matrix RowSlice(int64_t begin, int64_t end) const {
    return {static_cast<const char*>(data) + begin * ld * kernels::DTypeSize(dtype), dtype,
            end - begin, cols, ld, scales != nullptr ? scales + begin : nullptr};
  }
  // Columns [begin, end). REQUIRES: 0 <= begin <= end <= cols.
  Matrix ColSlice(int64_t begin, int64_t end) const {
    return {static_cast<const char*>(data) + begin * kernels::DTypeSize(dtype), dtype, rows,
            end - begin, ld, scales};
  }
  // Bytes a pass over the matrix reads (rows * cols elements).
  uint64_t bytes() const {
    return static_cast<uint64_t>(rows * cols * kernels::DTypeSize(dtype));
  }
};

// Small vectors (norm scales, biases) upcast to float once at load, so
// kernels that take `const float*` can use them whatever the checkpoint
// dtype. Empty when the architecture has no such tensor.
using Vec = std::vector<float>;

struct LayerWeights {
  Vec input_norm;        // [hidden]
  Matrix q_proj;         // [num_heads * head_dim, hidden]
  Matrix k_proj;         // [num_kv_heads * head_dim, hidden]
  Matrix v_proj;         // [num_kv_heads * head_dim, hidden]
  Matrix o_proj;         // [hidden, num_heads * head_dim]
  Vec q_bias;            // [num_heads * head_dim], when config.qkv_bias
  Vec k_bias;            // [num_kv_heads * head_dim], when config.qkv_bias
  Vec v_bias;            // [num_kv_heads * head_dim], when config.qkv_bias
  Vec o_bias;            // [hidden], when config.o_bias
  Vec q_norm;            // [head_dim], when config.qk_norm
  Vec k_norm;            // [head_dim], when config.qk_norm
  Vec post_attention_norm;  // [hidden]
  Matrix gate_proj;      // [intermediate, hidden]
  Matrix up_proj;        // [intermediate, hidden]
  Matrix down_proj;      // [hidden, intermediate]
};

// How linear weights are held for the GEMM. kInt8: q/k/v/o, gate/up/down
// and lm_head quantized at load to int8, symmetric, one scale per output
// channel (the embedding table stays in the checkpoint dtype: it is
// gathered, not multiplied).
enum class Quantization { kNone, kInt8 };

// "none" or "int8" (case-insensitive); InvalidArgument naming the value.
absl::StatusOr<Quantization> ParseQuantization(std::string_view name);
// "none" / "int8".
const char* QuantizationName(Quantization q);

// Immutable after Create; thread-safe for concurrent readers.
class ModelWeights {
 public:
  struct Options {
    // Directory with config.json and the safetensors checkpoint.
    std::filesystem::path dir = {};
    // How tensor bytes are held (default anonymous huge-page memory).
    SafetensorsCheckpoint::Storage storage = SafetensorsCheckpoint::Storage::kAnonymous;
    // kInt8: quantize the linear weights at load (see Quantization). A checkpoint stored int8 (compressed-tensors, config.json's
    // quantization_config) loads as int8 whatever this says: kNone keeps
    // the layers it stores unquantized (usually lm_head) as they are, kInt8
    // quantizes those at load too. It is never dequantized.
    Quantization quantization = Quantization::kNone;
    // After quantizing at load, give the checkpoint's memory of the
    // replaced matrices back to the OS (SafetensorsCheckpoint::Release;
    // never the embedding table, which a tied lm_head shares). false keeps
    // them, for tests that compare against them.
    bool release_originals = true;
  };

  // Loads config.json and the checkpoint from options.dir and checks them.
  static absl::StatusOr<std::unique_ptr<ModelWeights>> Load(const Options& options);
  // Checks an already loaded checkpoint against `config` and takes it over.
  static absl::StatusOr<std::unique_ptr<ModelWeights>> Create(
      const ModelConfig& config, std::unique_ptr<SafetensorsCheckpoint> checkpoint,
      Quantization quantization = Quantization::kNone, bool release_originals = true);

  const ModelConfig& config() const { return config_; }
  const Matrix& embed_tokens() const { return embed_tokens_; }  // [vocab, hidden]
  const std::vector<LayerWeights>& layers() const { return layers_; }
  const Vec& final_norm() const { return final_norm_; }  // [hidden]
  // [vocab, hidden]; the embedding matrix itself when tie_word_embeddings.
  const Matrix& lm_head() const { return lm_head_; }
  // The quantized matrices' originals are released (data nullptr) unless
  // Options::release_originals was false.
  const SafetensorsCheckpoint& checkpoint() const { return *checkpoint_; }
  // Checkpoint bytes given back to the OS after quantizing at load.
  uint64_t released_checkpoint_bytes() const { return released_bytes_; }
  // kInt8 when any linear matrix is int8 (quantized at load or stored so).
  Quantization quantization() const { return quantization_; }
  // Bytes of matrices read per decoded token (all layers + lm_head): the
  // numerator of the memory-bandwidth bound.
  uint64_t matrix_bytes_per_token() const;

 private:
  ModelWeights() = default;

  // Replaces every linear matrix (not the embedding) that is not int8
  // already by an int8 copy in quantized_.
  // With `release_originals`, releases the checkpoint tensors it replaced.
  // REQUIRES: checkpoint_ set.
  void QuantizeInt8(bool release_originals);

  ModelConfig config_;
  Quantization quantization_ = Quantization::kNone;
  // The int8 weights and their scales when quantized (huge-page aligned,
  // freed with std::free); the matrices point into them.
  std::unique_ptr<void, void (*)(void*)> quantized_{nullptr, &std::free};
  // The F32 scales of the int8 layers a compressed-tensors checkpoint
  // stores (converted from its dtype), one vector per matrix; those
  // matrices' data stay in the checkpoint.
  std::vector<std::vector<float>> checkpoint_scales_;
  std::unique_ptr<SafetensorsCheckpoint> checkpoint_;
  uint64_t released_bytes_ = 0;
  Matrix embed_tokens_;
  std::vector<LayerWeights> layers_;
  Vec final_norm_;
  Matrix lm_head_;
};

}  // namespace kestrel::model

#endif  // KESTREL_MODEL_WEIGHTS_H_
