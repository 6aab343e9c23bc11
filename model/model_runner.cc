#include "model/model_runner.h"

#include <cstring>

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/rope_tables.h"

namespace kestrel::model {
namespace {

kernels::DType ToKernelDType(DType t) {
  switch (t) {
    case DType::kF16: return kernels::DType::kF16;
    case DType::kBF16: return kernels::DType::kBF16;
    default: return kernels::DType::kF32;  // weights.cc admits only F32/F16/BF16
  }
}

kernels::RopeScaling ToKernelScaling(const RopeScaling& s) {
  kernels::RopeScaling k;
  switch (s.type) {
    case RopeScaling::Type::kNone: k.type = kernels::RopeScaling::Type::kNone; break;
    case RopeScaling::Type::kLinear: k.type = kernels::RopeScaling::Type::kLinear; break;
    case RopeScaling::Type::kLlama3: k.type = kernels::RopeScaling::Type::kLlama3; break;
  }
  k.factor = s.factor;
  k.low_freq_factor = s.low_freq_factor;
  k.high_freq_factor = s.high_freq_factor;
  k.original_max_position_embeddings = s.original_max_position_embeddings;
  return k;
}

// Adds context to a kernel error so a failure says where it happened.
absl::Status At(absl::Status s, int64_t layer, const char* op) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat("layer ", layer, " ", op, ": ", s.message()));
}

template <typename T>
T* Grow(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

}  // namespace

ModelRunner::~ModelRunner() = default;

absl::StatusOr<std::unique_ptr<ModelRunner>> ModelRunner::Create(const Options& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<ModelWeights> weights,
                   ModelWeights::Load({.dir = options.model_dir, .storage = options.storage}));
  return Create(options, std::move(weights));
}

absl::StatusOr<KvCacheDType> ParseKvCacheDType(std::string_view name) {
  const std::string lower = absl::AsciiStrToLower(std::string(name));
  if (lower == "auto") return KvCacheDType::kAuto;
  if (lower == "f32" || lower == "float32") return KvCacheDType::kF32;
  if (lower == "bf16" || lower == "bfloat16") return KvCacheDType::kBF16;
  return absl::InvalidArgumentError(absl::StrCat("kv_cache_dtype must be auto, f32 or bf16, got \"",
                                                 std::string(name), "\""));
}

absl::StatusOr<std::unique_ptr<ModelRunner>> ModelRunner::Create(
    const Options& options, std::unique_ptr<ModelWeights> weights) {
  if (weights == nullptr) return absl::InvalidArgumentError("model runner: no weights");
  std::unique_ptr<ModelRunner> r(new ModelRunner());
  r->options_ = options;
  r->weights_ = std::move(weights);
  const ModelConfig& c = r->weights_->config();
  if (options.num_threads < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("model runner: num_threads must be >= 0, got ", options.num_threads));
  }
  ASSIGN_OR_RETURN(r->pool_, kernels::cpu::ThreadPool::Create({.num_threads = options.num_threads}));
  r->ops_ = kernels::cpu::CreateCpuOps({.pool = r->pool_.get()});
  kernels::DType kv_dtype = kernels::DType::kF32;
  switch (options.kv_cache_dtype) {
    case KvCacheDType::kF32: break;
    case KvCacheDType::kBF16: kv_dtype = kernels::DType::kBF16; break;
    case KvCacheDType::kAuto:
      if (r->weights_->layers().front().k_proj.dtype == DType::kBF16) {
        kv_dtype = kernels::DType::kBF16;
      }
      break;
  }
  ASSIGN_OR_RETURN(r->kv_, KvPool::Create({.num_layers = c.num_hidden_layers,
                                           .num_kv_heads = c.num_key_value_heads,
                                           .head_dim = c.head_dim,
                                           .block_size = options.block_size,
                                           .memory_budget_bytes = options.kv_cache_bytes,
                                           .dtype = kv_dtype}));
  r->max_context_len_ =
      options.max_context_len > 0 ? options.max_context_len : c.max_position_embeddings;
  const size_t table = static_cast<size_t>(r->max_context_len_ * (c.head_dim / 2));
  r->rope_cos_.resize(table);
  r->rope_sin_.resize(table);
  RETURN_IF_ERROR(kernels::ComputeRopeTables(c.head_dim, static_cast<float>(c.rope_theta),
                                             ToKernelScaling(c.rope_scaling), r->max_context_len_,
                                             r->rope_cos_.data(), r->rope_sin_.data()));
  return r;
}

absl::Status ModelRunner::Validate(std::span<const SequenceInput> batch) const {
  if (batch.empty()) return absl::InvalidArgumentError("step: empty batch");
  const int64_t bs = kv_->block_size();
  for (size_t s = 0; s < batch.size(); ++s) {
    const SequenceInput& in = batch[s];
    const int64_t n = static_cast<int64_t>(in.token_ids.size());
    if (n == 0) return absl::InvalidArgumentError(absl::StrCat("step: sequence ", s, " has no new tokens"));
    if (in.position < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("step: sequence ", s, " position must be >= 0, got ", in.position));
    }
    for (int64_t i = 0; i < n; ++i) {
      if (in.token_ids[i] < 0 || in.token_ids[i] >= config().vocab_size) {
        return absl::InvalidArgumentError(
            absl::StrCat("step: sequence ", s, " token_ids[", i, "] = ", in.token_ids[i],
                         " is outside the vocabulary [0, ", config().vocab_size, ")"));
      }
    }
    const int64_t end = int64_t{in.position} + n;
    if (end > max_context_len_) {
      return absl::InvalidArgumentError(
          absl::StrCat("step: sequence ", s, " reaches position ", end - 1,
                       ", beyond the context length ", max_context_len_));
    }
    const int64_t needed = (end + bs - 1) / bs;
    if (static_cast<int64_t>(in.block_table.size()) < needed) {
      return absl::InvalidArgumentError(absl::StrCat(
          "step: sequence ", s, " block_table has ", in.block_table.size(),
          " blocks, positions [0, ", end, ") need ", needed));
    }
    for (int64_t b = 0; b < needed; ++b) {
      if (in.block_table[b] < 0 || in.block_table[b] >= kv_->num_blocks()) {
        return absl::InvalidArgumentError(
            absl::StrCat("step: sequence ", s, " block_table[", b, "] = ", in.block_table[b],
                         " is outside the pool's ", kv_->num_blocks(), " blocks"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ModelRunner::Linear(const float* x, int64_t ldx, const Matrix& w, const Vec& bias,
                                 float* y, int64_t ldy, int64_t m, bool accumulate) {
  kernels::GemmParams p;
  p.x = x;
  p.ldx = ldx;
  p.w = w.data;
  p.w_dtype = ToKernelDType(w.dtype);
  p.ldw = w.cols;
  p.bias = bias.empty() ? nullptr : bias.data();
  p.y = y;
  p.ldy = ldy;
  p.m = m;
  p.n = w.rows;
  p.k = w.cols;
  p.accumulate = accumulate;
  p.bf16_dot = options_.bf16_dot;
  return ops_->Gemm(p);
}

absl::Status ModelRunner::Layer(int64_t li, int64_t T, int64_t S) {
  const ModelConfig& c = config();
  const LayerWeights& w = weights_->layers()[li];
  const int64_t H = c.hidden_size, Q = c.q_size(), KV = c.kv_size(), I = c.intermediate_size;
  const int64_t qkv_w = Q + 2 * KV;
  float* x = x_.data();
  float* h = h_.data();
  float* q = qkv_.data();
  float* k = q + Q;
  float* v = k + KV;
  const float eps = c.rms_norm_eps;

  RETURN_IF_ERROR(At(ops_->RmsNorm(x, H, h, H, w.input_norm.data(), T, H, eps), li, "input_layernorm"));
  RETURN_IF_ERROR(At(Linear(h, H, w.q_proj, w.q_bias, q, qkv_w, T, false), li, "q_proj"));
  RETURN_IF_ERROR(At(Linear(h, H, w.k_proj, w.k_bias, k, qkv_w, T, false), li, "k_proj"));
  RETURN_IF_ERROR(At(Linear(h, H, w.v_proj, w.v_bias, v, qkv_w, T, false), li, "v_proj"));
  if (c.qk_norm) {
    RETURN_IF_ERROR(At(ops_->RmsNormPerHead(q, qkv_w, T, c.num_attention_heads, c.head_dim,
                                            w.q_norm.data(), eps), li, "q_norm"));
    RETURN_IF_ERROR(At(ops_->RmsNormPerHead(k, qkv_w, T, c.num_key_value_heads, c.head_dim,
                                            w.k_norm.data(), eps), li, "k_norm"));
  }
  RETURN_IF_ERROR(At(ops_->ApplyRope(q, qkv_w, c.num_attention_heads, k, qkv_w,
                                     c.num_key_value_heads, positions_.data(), T, c.head_dim,
                                     rope_cos_.data(), rope_sin_.data(), max_context_len_),
                     li, "rope"));
  RETURN_IF_ERROR(At(ops_->WriteKvCache(k, qkv_w, v, qkv_w, slots_.data(), T,
                                        c.num_key_value_heads, c.head_dim, kv_->k(li), kv_->v(li),
                                        kv_->num_blocks(), kv_->block_size(), kv_->dtype()),
                     li, "kv cache write"));
  kernels::PagedAttentionParams a;
  a.q = q;
  a.q_stride = qkv_w;
  a.out = attn_.data();
  a.out_stride = Q;
  a.k_cache = kv_->k(li);
  a.v_cache = kv_->v(li);
  a.kv_dtype = kv_->dtype();
  a.num_blocks = kv_->num_blocks();
  a.block_size = kv_->block_size();
  a.num_seqs = S;
  a.query_start = query_start_.data();
  a.context_lens = context_lens_.data();
  a.block_tables = block_tables_.data();
  a.block_table_stride = block_table_stride_;
  a.num_heads = c.num_attention_heads;
  a.num_kv_heads = c.num_key_value_heads;
  a.head_dim = c.head_dim;
  a.sliding_window = c.sliding_window;
  RETURN_IF_ERROR(At(ops_->PagedAttention(a), li, "attention"));
  // The residual add is fused into o_proj and down_proj (accumulate).
  RETURN_IF_ERROR(At(Linear(attn_.data(), Q, w.o_proj, w.o_bias, x, H, T, true), li, "o_proj"));

  RETURN_IF_ERROR(At(ops_->RmsNorm(x, H, h, H, w.post_attention_norm.data(), T, H, eps), li,
                     "post_attention_layernorm"));
  float* gate = mlp_.data();
  float* up = gate + I;
  RETURN_IF_ERROR(At(Linear(h, H, w.gate_proj, {}, gate, 2 * I, T, false), li, "gate_proj"));
  RETURN_IF_ERROR(At(Linear(h, H, w.up_proj, {}, up, 2 * I, T, false), li, "up_proj"));
  RETURN_IF_ERROR(At(ops_->SiluAndMul(gate, 2 * I, up, 2 * I, gate, 2 * I, T, I), li, "silu_mul"));
  RETURN_IF_ERROR(At(Linear(gate, 2 * I, w.down_proj, {}, x, H, T, true), li, "down_proj"));
  return absl::OkStatus();
}

absl::Status ModelRunner::Step(std::span<const SequenceInput> batch, StepOutput* out) {
  RETURN_IF_ERROR(Validate(batch));
  const ModelConfig& c = config();
  const int64_t S = static_cast<int64_t>(batch.size());
  const int64_t bs = kv_->block_size();

  // Plan once per step: flattened ids/positions/slots, the attention
  // metadata and which rows need logits; every layer reuses it.
  int64_t T = 0;
  block_table_stride_ = 1;
  for (const SequenceInput& in : batch) {
    T += static_cast<int64_t>(in.token_ids.size());
    const int64_t end = in.position + static_cast<int64_t>(in.token_ids.size());
    block_table_stride_ = std::max(block_table_stride_, (end + bs - 1) / bs);
  }
  Grow(ids_, T);
  Grow(positions_, T);
  Grow(slots_, T);
  Grow(query_start_, S + 1);
  Grow(context_lens_, S);
  // Rows past a sequence's last block are never read; zero keeps them in range.
  block_tables_.assign(S * block_table_stride_, 0);
  logit_rows_.clear();
  out->first_row.assign(S, -1);
  out->vocab_size = c.vocab_size;

  int64_t t = 0;
  query_start_[0] = 0;
  for (int64_t s = 0; s < S; ++s) {
    const SequenceInput& in = batch[s];
    const int64_t n = static_cast<int64_t>(in.token_ids.size());
    const int64_t end = in.position + n;
    std::copy(in.block_table.begin(), in.block_table.begin() + (end + bs - 1) / bs,
              block_tables_.begin() + s * block_table_stride_);
    if (in.logits != LogitsMode::kNone) out->first_row[s] = static_cast<int32_t>(logit_rows_.size());
    for (int64_t i = 0; i < n; ++i, ++t) {
      const int32_t pos = in.position + static_cast<int32_t>(i);
      ids_[t] = in.token_ids[i];
      positions_[t] = pos;
      slots_[t] = in.block_table[pos / bs] * static_cast<int32_t>(bs) + pos % static_cast<int32_t>(bs);
      if (in.logits == LogitsMode::kAll || (in.logits == LogitsMode::kLast && i == n - 1)) {
        logit_rows_.push_back(static_cast<int32_t>(t));
      }
    }
    query_start_[s + 1] = static_cast<int32_t>(t);
    context_lens_[s] = static_cast<int32_t>(end);
  }

  const int64_t H = c.hidden_size;
  Grow(x_, T * H);
  Grow(h_, T * H);
  Grow(qkv_, T * (c.q_size() + 2 * c.kv_size()));
  Grow(attn_, T * c.q_size());
  Grow(mlp_, T * 2 * c.intermediate_size);

  const Matrix& embed = weights_->embed_tokens();
  absl::Status s = ops_->EmbeddingGather(embed.data, ToKernelDType(embed.dtype), c.vocab_size, H,
                                         ids_.data(), T, x_.data(), H);
  if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat("step: ", s.message()));
  for (int64_t li = 0; li < c.num_hidden_layers; ++li) RETURN_IF_ERROR(Layer(li, T, S));

  // Only the sampled rows go through the final norm and the (large) lm_head.
  const int64_t R = static_cast<int64_t>(logit_rows_.size());
  out->logits.resize(R * c.vocab_size);
  if (R == 0) return absl::OkStatus();
  Grow(final_, R * H);
  for (int64_t r = 0; r < R; ++r) {
    std::copy_n(x_.data() + logit_rows_[r] * H, H, final_.data() + r * H);
  }
  RETURN_IF_ERROR(ops_->RmsNorm(final_.data(), H, final_.data(), H, weights_->final_norm().data(),
                                R, H, c.rms_norm_eps));
  return Linear(final_.data(), H, weights_->lm_head(), {}, out->logits.data(), c.vocab_size, R,
                false);
}

absl::Status ModelRunner::CopyKvBlock(int32_t src, int32_t dst) {
  const int64_t blocks = kv_->num_blocks();
  if (src < 0 || src >= blocks || dst < 0 || dst >= blocks) {
    return absl::InvalidArgumentError(absl::StrCat("KV block copy ", src, " -> ", dst,
                                                   " is outside the pool of ", blocks, " blocks"));
  }
  const int64_t n = kv_->block_bytes();
  for (int64_t layer = 0; layer < kv_->num_layers(); ++layer) {
    for (char* base : {static_cast<char*>(kv_->k(layer)), static_cast<char*>(kv_->v(layer))}) {
      std::memcpy(base + dst * n, base + src * n, static_cast<size_t>(n));
    }
  }
  return absl::OkStatus();
}

}  // namespace kestrel::model
