#include "model/weights.h"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <set>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "kernels/quantize.h"

namespace kestrel::model {
namespace {

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// Looks up `name`, checks shape and dtype, and records it as used.
class Binder {
 public:
  // `scale_store` receives the F32 scales of int8 layers (not owned).
  Binder(const SafetensorsCheckpoint& ckpt, const CheckpointQuantization& quant,
         std::vector<std::vector<float>>* scale_store)
      : ckpt_(ckpt), quant_(quant), scale_store_(scale_store) {}

  // `name` with shape `shape` (any of `shapes` when given), any dtype.
  absl::StatusOr<const LoadedTensor*> GetAnyDType(
      const std::string& name, const std::vector<std::vector<int64_t>>& shapes) {
    const LoadedTensor* t = ckpt_.Find(name);
    if (t == nullptr) {
      return absl::NotFoundError(absl::StrCat("checkpoint is missing tensor \"", name,
                                              "\" (expected shape ", ShapeString(shapes[0]),
                                              ")"));
    }
    if (std::find(shapes.begin(), shapes.end(), t->shape) == shapes.end()) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\" in ", t->file,
                                                     " has shape ", ShapeString(t->shape),
                                                     ", config.json implies ",
                                                     ShapeString(shapes[0])));
    }
    used_.insert(name);
    return t;
  }

  absl::StatusOr<const LoadedTensor*> Get(const std::string& name,
                                          const std::vector<int64_t>& shape) {
    ASSIGN_OR_RETURN(const LoadedTensor* t, GetAnyDType(name, {shape}));
    if (!kernels::IsWeightDType(t->dtype)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor \"", name, "\" in ", t->file, " has dtype ", kernels::DTypeName(t->dtype),
          t->dtype == kernels::DType::kI8
              ? "; I8 weights are only read for linear layers that config.json's "
                "quantization_config (compressed-tensors) quantizes"
              : "; weights must be F32, F16 or BF16"));
    }
    return t;
  }

  // The weight of Linear module `module` ("model.layers.0.mlp.up_proj"),
  // [rows, cols]: in a float dtype, or, when config.json's
  // quantization_config quantizes the module, I8 with `<module>.weight_scale`
  // [rows, 1] (any float dtype, converted to F32) and no nonzero
  // `<module>.weight_zero_point`.
  absl::StatusOr<Matrix> GetLinear(const std::string& module, int64_t rows, int64_t cols) {
    const std::string name = module + ".weight";
    if (!quant_.Quantizes(module)) {
      const LoadedTensor* t = ckpt_.Find(name);
      if (t != nullptr && t->dtype == kernels::DType::kI8) {
        return absl::InvalidArgumentError(absl::StrCat(
            "tensor \"", name, "\" in ", t->file, " has dtype I8, but ",
            quant_.int8 ? "config.json's quantization_config lists module \"" + module +
                              "\" in ignore (stored unquantized)"
                        : std::string("config.json has no quantization_config (int8 "
                                      "checkpoints need compressed-tensors' one)")));
      }
      return GetMatrix(name, rows, cols);
    }
    ASSIGN_OR_RETURN(const LoadedTensor* t, GetAnyDType(name, {{rows, cols}}));
    if (t->dtype != kernels::DType::kI8) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor \"", name, "\" in ", t->file, " has dtype ", kernels::DTypeName(t->dtype),
          ", but config.json's quantization_config (compressed-tensors int8) stores module \"",
          module, "\" as I8"));
    }
    const std::string scale_name = module + ".weight_scale";
    ASSIGN_OR_RETURN(const LoadedTensor* s, GetAnyDType(scale_name, {{rows, 1}, {rows}}));
    if (!kernels::IsWeightDType(s->dtype)) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", scale_name, "\" in ", s->file,
                                                     " has dtype ", kernels::DTypeName(s->dtype),
                                                     "; scales must be F32, F16 or BF16"));
    }
    std::vector<float> scales(static_cast<size_t>(rows));
    kernels::ConvertToF32(s->data, s->dtype, rows, scales.data());
    for (int64_t r = 0; r < rows; ++r) {
      if (!std::isfinite(scales[r])) {
        return absl::InvalidArgumentError(absl::StrCat("tensor \"", scale_name, "\" in ",
                                                       s->file, ": row ", r, " has scale ",
                                                       scales[r]));
      }
    }
    RETURN_IF_ERROR(CheckZeroPoint(module, rows));
    scale_store_->push_back(std::move(scales));
    return Matrix{t->data, kernels::DType::kI8, rows, cols, cols, scale_store_->back().data()};
  }

  absl::StatusOr<Matrix> GetMatrix(const std::string& name, int64_t rows, int64_t cols) {
    ASSIGN_OR_RETURN(const LoadedTensor* t, Get(name, {rows, cols}));
    return Matrix{t->data, t->dtype, rows, cols, cols, nullptr};
  }

  absl::StatusOr<Vec> GetVec(const std::string& name, int64_t n) {
    ASSIGN_OR_RETURN(const LoadedTensor* t, Get(name, {n}));
    Vec v(n);
    for (int64_t i = 0; i < n; ++i) v[i] = kernels::LoadAsF32(t->data, t->dtype, i);
    return v;
  }

  void MarkUsed(const std::string& name) { used_.insert(name); }

  // Every tensor must be accounted for: an extra one means the config
  // describes a different architecture than the checkpoint holds.
  absl::Status CheckNoneUnused() const {
    for (const LoadedTensor& t : ckpt_.tensors()) {
      if (used_.contains(t.name)) continue;
      // Old Llama exports carry the RoPE table as a buffer; we compute it.
      if (absl::EndsWith(t.name, "rotary_emb.inv_freq")) continue;
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor \"", t.name, "\" in ", t.file,
          " is not part of the architecture config.json describes (check attention_bias, "
          "tie_word_embeddings, num_hidden_layers, model_type)"));
    }
    return absl::OkStatus();
  }

 private:
  // compressed-tensors writes a zero point only for asymmetric schemes (or,
  // in old versions, zeros for symmetric ones): zeros are accepted, since
  // W = scale * (q - 0); anything else would be a different scheme.
  absl::Status CheckZeroPoint(const std::string& module, int64_t rows) {
    const std::string name = module + ".weight_zero_point";
    if (ckpt_.Find(name) == nullptr) return absl::OkStatus();
    ASSIGN_OR_RETURN(const LoadedTensor* z, GetAnyDType(name, {{rows, 1}, {rows}}));
    for (int64_t r = 0; r < rows; ++r) {
      double v;
      switch (z->dtype) {
        case kernels::DType::kI8: v = static_cast<const int8_t*>(z->data)[r]; break;
        case kernels::DType::kU8: v = static_cast<const uint8_t*>(z->data)[r]; break;
        case kernels::DType::kI32: v = static_cast<const int32_t*>(z->data)[r]; break;
        case kernels::DType::kI64:
          v = static_cast<double>(static_cast<const int64_t*>(z->data)[r]);
          break;
        case kernels::DType::kF32:
        case kernels::DType::kF16:
        case kernels::DType::kBF16: v = kernels::LoadAsF32(z->data, z->dtype, r); break;
        default:
          return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\" in ", z->file,
                                                         " has dtype ",
                                                         kernels::DTypeName(z->dtype),
                                                         "; zero points must be I8, U8, I32, I64, F32, F16 or BF16"));
      }
      if (v != 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "tensor \"", name, "\" in ", z->file, ": row ", r, " has zero point ", v,
            "; only symmetric int8 (zero points all 0) is supported"));
      }
    }
    return absl::OkStatus();
  }

  const SafetensorsCheckpoint& ckpt_;
  const CheckpointQuantization& quant_;
  std::vector<std::vector<float>>* scale_store_;  // not owned
  std::set<std::string> used_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ModelWeights>> ModelWeights::Load(const Options& options) {
  ASSIGN_OR_RETURN(ModelConfig config, ModelConfig::LoadFromDir(options.dir));
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsCheckpoint> ckpt,
                   SafetensorsCheckpoint::Load({.dir = options.dir, .storage = options.storage}));
  return Create(config, std::move(ckpt), options.quantization, options.release_originals);
}

absl::StatusOr<Quantization> ParseQuantization(std::string_view name) {
  const absl::string_view n(name.data(), name.size());
  if (absl::EqualsIgnoreCase(n, "none")) return Quantization::kNone;
  if (absl::EqualsIgnoreCase(n, "int8")) return Quantization::kInt8;
  return absl::InvalidArgumentError(
      absl::StrCat("quantization must be none or int8, got \"", n, "\""));
}

const char* QuantizationName(Quantization q) {
  switch (q) {
    case Quantization::kNone: return "none";
    case Quantization::kInt8: return "int8";
  }
  return "?";  // unreachable: every enumerator is handled above
}

void ModelWeights::QuantizeInt8(bool release_originals) {
  // Each matrix to quantize, with the checkpoint tensor it was read from
  // (none for a tied lm_head: the embedding table is still gathered).
  std::vector<Matrix*> linear;
  std::vector<std::string> source;
  for (size_t i = 0; i < layers_.size(); ++i) {
    LayerWeights& l = layers_[i];
    const std::string p = absl::StrCat("model.layers.", i, ".");
    for (auto [m, name] : {std::pair{&l.q_proj, "self_attn.q_proj"},
                           {&l.k_proj, "self_attn.k_proj"},
                           {&l.v_proj, "self_attn.v_proj"},
                           {&l.o_proj, "self_attn.o_proj"},
                           {&l.gate_proj, "mlp.gate_proj"},
                           {&l.up_proj, "mlp.up_proj"},
                           {&l.down_proj, "mlp.down_proj"}}) {
      if (m->dtype == kernels::DType::kI8) continue;
      linear.push_back(m);
      source.push_back(absl::StrCat(p, name, ".weight"));
    }
  }
  if (lm_head_.dtype != kernels::DType::kI8) {
    linear.push_back(&lm_head_);
    source.push_back(config_.tie_word_embeddings ? "" : "lm_head.weight");
  }
  if (linear.empty()) {  // an int8 checkpoint quantizes everything itself
    quantization_ = Quantization::kInt8;
    return;
  }
  // One allocation: the int8 rows, then the scales, 2 MiB aligned so
  // transparent huge pages can back it (as the checkpoint's own memory).
  constexpr size_t kHugePage = size_t{2} << 20;
  size_t bytes = 0, scale_count = 0;
  for (const Matrix* m : linear) {
    bytes += static_cast<size_t>(m->rows * m->cols);
    scale_count += static_cast<size_t>(m->rows);
  }
  bytes = (bytes + 63) / 64 * 64;
  const size_t total =
      (bytes + scale_count * sizeof(float) + kHugePage - 1) / kHugePage * kHugePage;
  void* mem = std::aligned_alloc(kHugePage, total);
  if (mem == nullptr) std::abort();  // out of memory at load, as a std::vector would
  (void)::madvise(mem, total, MADV_HUGEPAGE);
  quantized_.reset(mem);
  // Where each matrix goes; then blocks of rows on every hardware thread.
  // A row's scale and int8 values depend on that row alone, so the result
  // is bit-identical whatever the thread count or the order of the blocks.
  struct Out {
    int8_t* q;      // [rows, cols]
    float* scales;  // [rows]
  };
  std::vector<Out> out(linear.size());
  int8_t* q = static_cast<int8_t*>(mem);
  float* scales = reinterpret_cast<float*>(static_cast<char*>(mem) + bytes);
  constexpr int64_t kBlockRows = 64;  // 256 KiB of a BF16 row of 2048
  std::vector<std::pair<size_t, int64_t>> blocks;  // (matrix, first row)
  for (size_t i = 0; i < linear.size(); ++i) {
    const Matrix& m = *linear[i];
    out[i] = {q, scales};
    q += m.rows * m.cols;
    scales += m.rows;
    for (int64_t r = 0; r < m.rows; r += kBlockRows) blocks.emplace_back(i, r);
  }
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t b; (b = next.fetch_add(1, std::memory_order_relaxed)) < blocks.size();) {
      const auto [i, r] = blocks[b];
      const Matrix& src = *linear[i];
      kernels::QuantizeRowsI8(
          static_cast<const char*>(src.data) + r * src.ld * kernels::DTypeSize(src.dtype),
          src.dtype, std::min(kBlockRows, src.rows - r), src.cols, src.ld,
          out[i].q + r * src.cols, out[i].scales + r);
    }
  };
  const size_t num_threads =
      std::max<size_t>(1, std::min<size_t>(std::thread::hardware_concurrency(), blocks.size()));
  std::vector<std::thread> threads;
  for (size_t t = 1; t < num_threads; ++t) threads.emplace_back(work);
  work();
  for (std::thread& t : threads) t.join();
  for (size_t i = 0; i < linear.size(); ++i) {
    Matrix& m = *linear[i];
    m = Matrix{out[i].q, kernels::DType::kI8, m.rows, m.cols, m.cols, out[i].scales};
  }
  quantization_ = Quantization::kInt8;
  // Nothing points at the originals any more (the matrices above were their
  // only views), so their memory can go: otherwise a BF16 checkpoint
  // quantized at load keeps 3 bytes per weight resident instead of 1.
  if (release_originals) {
    for (const std::string& name : source) {
      if (!name.empty()) released_bytes_ += checkpoint_->Release(name);
    }
  }
}

absl::StatusOr<std::unique_ptr<ModelWeights>> ModelWeights::Create(
    const ModelConfig& config, std::unique_ptr<SafetensorsCheckpoint> checkpoint,
    Quantization quantization, bool release_originals) {
  std::unique_ptr<ModelWeights> w(new ModelWeights());
  w->config_ = config;
  const ModelConfig& c = config;
  Binder b(*checkpoint, c.quantization, &w->checkpoint_scales_);
  const int64_t h = c.hidden_size;
  ASSIGN_OR_RETURN(w->embed_tokens_, b.GetMatrix("model.embed_tokens.weight", c.vocab_size, h));
  w->layers_.resize(c.num_hidden_layers);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    LayerWeights& l = w->layers_[i];
    const std::string p = absl::StrCat("model.layers.", i, ".");
    ASSIGN_OR_RETURN(l.input_norm, b.GetVec(p + "input_layernorm.weight", h));
    ASSIGN_OR_RETURN(l.q_proj, b.GetLinear(p + "self_attn.q_proj", c.q_size(), h));
    ASSIGN_OR_RETURN(l.k_proj, b.GetLinear(p + "self_attn.k_proj", c.kv_size(), h));
    ASSIGN_OR_RETURN(l.v_proj, b.GetLinear(p + "self_attn.v_proj", c.kv_size(), h));
    ASSIGN_OR_RETURN(l.o_proj, b.GetLinear(p + "self_attn.o_proj", h, c.q_size()));
    if (c.qkv_bias) {
      ASSIGN_OR_RETURN(l.q_bias, b.GetVec(p + "self_attn.q_proj.bias", c.q_size()));
      ASSIGN_OR_RETURN(l.k_bias, b.GetVec(p + "self_attn.k_proj.bias", c.kv_size()));
      ASSIGN_OR_RETURN(l.v_bias, b.GetVec(p + "self_attn.v_proj.bias", c.kv_size()));
    }
    if (c.o_bias) {
      ASSIGN_OR_RETURN(l.o_bias, b.GetVec(p + "self_attn.o_proj.bias", h));
    }
    if (c.qk_norm) {
      ASSIGN_OR_RETURN(l.q_norm, b.GetVec(p + "self_attn.q_norm.weight", c.head_dim));
      ASSIGN_OR_RETURN(l.k_norm, b.GetVec(p + "self_attn.k_norm.weight", c.head_dim));
    }
    ASSIGN_OR_RETURN(l.post_attention_norm, b.GetVec(p + "post_attention_layernorm.weight", h));
    ASSIGN_OR_RETURN(l.gate_proj, b.GetLinear(p + "mlp.gate_proj", c.intermediate_size, h));
    ASSIGN_OR_RETURN(l.up_proj, b.GetLinear(p + "mlp.up_proj", c.intermediate_size, h));
    ASSIGN_OR_RETURN(l.down_proj, b.GetLinear(p + "mlp.down_proj", h, c.intermediate_size));
  }
  ASSIGN_OR_RETURN(w->final_norm_, b.GetVec("model.norm.weight", h));
  if (c.tie_word_embeddings) {
    w->lm_head_ = w->embed_tokens_;
    // Some exports store the tied copy anyway; it is ignored, as in PyTorch.
    for (const char* name : {"lm_head.weight", "lm_head.weight_scale", "lm_head.weight_zero_point"}) {
      b.MarkUsed(name);
    }
  } else {
    ASSIGN_OR_RETURN(w->lm_head_, b.GetLinear("lm_head", c.vocab_size, h));
  }
  RETURN_IF_ERROR(b.CheckNoneUnused());
  // An int8 checkpoint stays int8 whatever `quantization` says (it is not
  // dequantized); kInt8 also quantizes what it stores unquantized (lm_head).
  if (!w->checkpoint_scales_.empty()) w->quantization_ = Quantization::kInt8;
  w->checkpoint_ = std::move(checkpoint);
  if (quantization == Quantization::kInt8) w->QuantizeInt8(release_originals);
  return w;
}

uint64_t ModelWeights::matrix_bytes_per_token() const {
  auto bytes = [](const Matrix& m) { return m.bytes(); };
  uint64_t total = bytes(lm_head_);
  for (const LayerWeights& l : layers_) {
    total += bytes(l.q_proj) + bytes(l.k_proj) + bytes(l.v_proj) + bytes(l.o_proj) +
             bytes(l.gate_proj) + bytes(l.up_proj) + bytes(l.down_proj);
  }
  return total;
}

}  // namespace kestrel::model
