#include "model/weights.h"

#include <sys/mman.h>

#include <cstdlib>
#include <set>

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
  Binder(const SafetensorsCheckpoint& ckpt) : ckpt_(ckpt) {}

  absl::StatusOr<const LoadedTensor*> Get(const std::string& name,
                                          const std::vector<int64_t>& shape) {
    const LoadedTensor* t = ckpt_.Find(name);
    if (t == nullptr) {
      return absl::NotFoundError(absl::StrCat("checkpoint is missing tensor \"", name,
                                              "\" (expected shape ", ShapeString(shape), ")"));
    }
    if (t->shape != shape) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\" in ", t->file,
                                                     " has shape ", ShapeString(t->shape),
                                                     ", config.json implies ", ShapeString(shape)));
    }
    if (!kernels::IsWeightDType(t->dtype)) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\" in ", t->file,
                                                     " has dtype ", kernels::DTypeName(t->dtype),
                                                     "; weights must be F32, F16 or BF16"));
    }
    used_.insert(name);
    return t;
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
  const SafetensorsCheckpoint& ckpt_;
  std::set<std::string> used_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ModelWeights>> ModelWeights::Load(const Options& options) {
  ASSIGN_OR_RETURN(ModelConfig config, ModelConfig::LoadFromDir(options.dir));
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsCheckpoint> ckpt,
                   SafetensorsCheckpoint::Load({.dir = options.dir, .storage = options.storage}));
  return Create(config, std::move(ckpt), options.quantization);
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

void ModelWeights::QuantizeInt8() {
  std::vector<Matrix*> linear;
  for (LayerWeights& l : layers_) {
    for (Matrix* m : {&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj, &l.up_proj,
                      &l.down_proj}) {
      linear.push_back(m);
    }
  }
  linear.push_back(&lm_head_);
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
  int8_t* q = static_cast<int8_t*>(mem);
  float* scales = reinterpret_cast<float*>(static_cast<char*>(mem) + bytes);
  for (Matrix* m : linear) {
    kernels::QuantizeRowsI8(m->data, m->dtype, m->rows, m->cols, m->ld, q, scales);
    *m = Matrix{q, kernels::DType::kI8, m->rows, m->cols, m->cols, scales};
    q += m->rows * m->cols;
    scales += m->rows;
  }
  quantization_ = Quantization::kInt8;
}

absl::StatusOr<std::unique_ptr<ModelWeights>> ModelWeights::Create(
    const ModelConfig& config, std::unique_ptr<SafetensorsCheckpoint> checkpoint,
    Quantization quantization) {
  std::unique_ptr<ModelWeights> w(new ModelWeights());
  w->config_ = config;
  const ModelConfig& c = config;
  Binder b(*checkpoint);
  const int64_t h = c.hidden_size;
  ASSIGN_OR_RETURN(w->embed_tokens_, b.GetMatrix("model.embed_tokens.weight", c.vocab_size, h));
  w->layers_.resize(c.num_hidden_layers);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    LayerWeights& l = w->layers_[i];
    const std::string p = absl::StrCat("model.layers.", i, ".");
    ASSIGN_OR_RETURN(l.input_norm, b.GetVec(p + "input_layernorm.weight", h));
    ASSIGN_OR_RETURN(l.q_proj, b.GetMatrix(p + "self_attn.q_proj.weight", c.q_size(), h));
    ASSIGN_OR_RETURN(l.k_proj, b.GetMatrix(p + "self_attn.k_proj.weight", c.kv_size(), h));
    ASSIGN_OR_RETURN(l.v_proj, b.GetMatrix(p + "self_attn.v_proj.weight", c.kv_size(), h));
    ASSIGN_OR_RETURN(l.o_proj, b.GetMatrix(p + "self_attn.o_proj.weight", h, c.q_size()));
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
    ASSIGN_OR_RETURN(l.gate_proj, b.GetMatrix(p + "mlp.gate_proj.weight", c.intermediate_size, h));
    ASSIGN_OR_RETURN(l.up_proj, b.GetMatrix(p + "mlp.up_proj.weight", c.intermediate_size, h));
    ASSIGN_OR_RETURN(l.down_proj, b.GetMatrix(p + "mlp.down_proj.weight", h, c.intermediate_size));
  }
  ASSIGN_OR_RETURN(w->final_norm_, b.GetVec("model.norm.weight", h));
  if (c.tie_word_embeddings) {
    w->lm_head_ = w->embed_tokens_;
    // Some exports store the tied copy anyway; it is ignored, as in PyTorch.
    b.MarkUsed("lm_head.weight");
  } else {
    ASSIGN_OR_RETURN(w->lm_head_, b.GetMatrix("lm_head.weight", c.vocab_size, h));
  }
  RETURN_IF_ERROR(b.CheckNoneUnused());
  if (quantization == Quantization::kInt8) w->QuantizeInt8();
  w->checkpoint_ = std::move(checkpoint);
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
