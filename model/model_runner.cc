#include "model/model_runner.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "kernels/rope_tables.h"

namespace kestrel::model {
namespace {

// Adds context to a kernel error so a failure says where it happened.
absl::Status At(absl::Status s, int64_t layer, const char* op) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat("layer ", layer, " ", op, ": ", s.message()));
}

}  // namespace

ModelRunner::~ModelRunner() = default;

absl::StatusOr<KvCacheDType> ParseKvCacheDType(std::string_view name) {
  const std::string lower = absl::AsciiStrToLower(std::string(name));
  if (lower == "auto") return KvCacheDType::kAuto;
  if (lower == "f32" || lower == "float32") return KvCacheDType::kF32;
  if (lower == "bf16" || lower == "bfloat16") return KvCacheDType::kBF16;
  return absl::InvalidArgumentError(absl::StrCat("kv_cache_dtype must be auto, f32 or bf16, got \"",
                                                 std::string(name), "\""));
}

absl::StatusOr<std::unique_ptr<ModelRunner>> ModelRunner::Create(
    const Options& options, std::shared_ptr<const ModelWeights> weights,
    kernels::Backend* backend) {
  if (weights == nullptr) return absl::InvalidArgumentError("model runner: no weights");
  if (backend == nullptr) return absl::InvalidArgumentError("model runner: no backend");
  std::unique_ptr<ModelRunner> r(new ModelRunner());
  r->options_ = options;
  r->weights_ = std::move(weights);
  r->backend_ = backend;
  r->device_ = &backend->device();
  r->ops_ = &backend->ops();
  const ModelConfig& c = r->weights_->config();
  parallel::Communicator* comm = options.communicator;
  ASSIGN_OR_RETURN(r->shard_, ComputeShard(c, comm == nullptr ? 0 : comm->rank(),
                                           comm == nullptr ? 1 : comm->size()));
  r->q_size_ = r->shard_.num_q_heads * c.head_dim;
  r->kv_size_ = r->shard_.num_kv_heads * c.head_dim;
  r->intermediate_ = r->shard_.intermediate;
  RETURN_IF_ERROR(r->UploadWeights());

  kernels::DType kv_dtype = kernels::DType::kF32;
  switch (options.kv_cache_dtype) {
    case KvCacheDType::kF32:
      break;
    case KvCacheDType::kBF16:
      kv_dtype = kernels::DType::kBF16;
      break;
    case KvCacheDType::kAuto:
      // The embedding keeps the checkpoint's dtype when the linear weights
      // are quantized (int8 weights of a BF16 model get a BF16 cache).
      if (r->weights_->embed_tokens().dtype == kernels::DType::kBF16) {
        kv_dtype = kernels::DType::kBF16;
      }
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "model runner: unknown kv_cache_dtype ", static_cast<int>(options.kv_cache_dtype)));
  }
  uint64_t kv_bytes = options.kv_cache_bytes;
  if (options.memory_utilization > 0) {
    ASSIGN_OR_RETURN(kv_bytes, r->KvBudgetFromUtilization(options.memory_utilization));
  }
  ASSIGN_OR_RETURN(r->kv_, KvPool::Create({.num_layers = c.num_hidden_layers,
                                           .num_kv_heads = r->shard_.num_kv_heads,
                                           .head_dim = c.head_dim,
                                           .block_size = options.block_size,
                                           .memory_budget_bytes = kv_bytes,
                                           .dtype = kv_dtype},
                                          r->device_));
  r->max_context_len_ =
      options.max_context_len > 0 ? options.max_context_len : c.max_position_embeddings;
  const size_t table = static_cast<size_t>(r->max_context_len_ * (c.head_dim / 2));
  std::vector<float> rope(2 * table);
  RETURN_IF_ERROR(kernels::ComputeRopeTables(c.head_dim, static_cast<float>(c.rope_theta),
                                             c.rope_scaling, r->max_context_len_, rope.data(),
                                             rope.data() + table));
  ASSIGN_OR_RETURN(r->rope_, r->device_->Allocate(rope.size() * sizeof(float), "RoPE tables"));
  RETURN_IF_ERROR(r->device_->CopyToDevice(r->rope_.data(), rope.data(), r->rope_.size()));
  return r;
}

absl::StatusOr<uint64_t> ModelRunner::KvBudgetFromUtilization(double utilization) const {
  if (!(utilization > 0 && utilization <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("gpu_memory_utilization must be in (0, 1], got ", utilization));
  }
  ASSIGN_OR_RETURN(const kernels::Device::MemoryInfo memory, device_->GetMemoryInfo());
  const double used = static_cast<double>(memory.total_bytes - memory.free_bytes);
  const double budget = utilization * static_cast<double>(memory.total_bytes) - used;
  constexpr double kGiB = 1 << 30;
  if (budget < 16 << 20) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "gpu_memory_utilization %.2f of %s's %.1f GiB leaves no room for the KV cache: "
        "%.1f GiB are in use once the weights are loaded",
        utilization, device_->name(), memory.total_bytes / kGiB, used / kGiB));
  }
  return static_cast<uint64_t>(budget);
}

absl::StatusOr<Matrix> ModelRunner::DeviceMatrix(const Matrix& m) {
  if (device_->host_memory()) return m;  // a view: zero copy
  if (m.dtype == kernels::DType::kI8) {
    return absl::UnimplementedError(absl::StrCat(
        "int8 weights (--quantization=int8, or an int8 compressed-tensors checkpoint) run only "
        "on the CPU backend; ", device_->name(),
        " has no int8 GEMM yet"));
  }
  const size_t row_bytes = static_cast<size_t>(m.cols * kernels::DTypeSize(m.dtype));
  ASSIGN_OR_RETURN(kernels::DeviceBuffer buffer,
                   device_->Allocate(row_bytes * static_cast<size_t>(m.rows), "weights"));
  const char* src = static_cast<const char*>(m.data);
  const size_t src_ld = static_cast<size_t>(m.ld * kernels::DTypeSize(m.dtype));
  if (src_ld == row_bytes) {
    RETURN_IF_ERROR(device_->CopyToDevice(buffer.data(), src, row_bytes * m.rows));
  } else {
    for (int64_t r = 0; r < m.rows; ++r) {
      RETURN_IF_ERROR(
          device_->CopyToDevice(buffer.as<char>() + r * row_bytes, src + r * src_ld, row_bytes));
    }
  }
  Matrix out = m;
  out.data = buffer.data();
  out.ld = m.cols;
  uploaded_.push_back(std::move(buffer));
  return out;
}

absl::StatusOr<const float*> ModelRunner::DeviceVector(const Vec& v, int64_t begin,
                                                       int64_t end) {
  if (v.empty()) return nullptr;
  if (end < 0) end = static_cast<int64_t>(v.size());
  if (device_->host_memory()) return v.data() + begin;
  ASSIGN_OR_RETURN(kernels::DeviceBuffer buffer,
                   device_->Allocate((end - begin) * sizeof(float), "norm weights and biases"));
  RETURN_IF_ERROR(device_->CopyToDevice(buffer.data(), v.data() + begin, buffer.size()));
  const float* out = buffer.as<float>();
  uploaded_.push_back(std::move(buffer));
  return out;
}

absl::Status ModelRunner::UploadWeights() {
  const ModelWeights& w = *weights_;
  const Shard& sh = shard_;
  const int64_t hd = config().head_dim;
  // The embedding is replicated: every rank gathers its rows from the whole
  // table (a view of the checkpoint on host memory, so nothing is copied).
  ASSIGN_OR_RETURN(embed_tokens_, DeviceMatrix(w.embed_tokens()));
  // lm_head is vocab-parallel: this rank's rows. A whole tied lm_head is the
  // embedding matrix itself: upload it once.
  if (sh.size == 1 && w.lm_head().data == w.embed_tokens().data) {
    lm_head_ = embed_tokens_;
  } else {
    ASSIGN_OR_RETURN(lm_head_, DeviceMatrix(w.lm_head().RowSlice(
                                   sh.vocab_begin, sh.vocab_begin + sh.vocab_count)));
  }
  ASSIGN_OR_RETURN(final_norm_, DeviceVector(w.final_norm()));
  const int64_t q0 = sh.q_head_begin * hd, q1 = q0 + sh.num_q_heads * hd;
  const int64_t kv0 = sh.kv_head_begin * hd, kv1 = kv0 + sh.num_kv_heads * hd;
  const int64_t i0 = sh.intermediate_begin, i1 = i0 + sh.intermediate;
  for (const LayerWeights& l : w.layers()) {
    LayerView& v = layers_.emplace_back();
    // Column-parallel: q/k/v and gate/up take this rank's output rows;
    // row-parallel: o_proj and down_proj take the matching input columns.
    ASSIGN_OR_RETURN(v.q_proj, DeviceMatrix(l.q_proj.RowSlice(q0, q1)));
    ASSIGN_OR_RETURN(v.k_proj, DeviceMatrix(l.k_proj.RowSlice(kv0, kv1)));
    ASSIGN_OR_RETURN(v.v_proj, DeviceMatrix(l.v_proj.RowSlice(kv0, kv1)));
    ASSIGN_OR_RETURN(v.o_proj, DeviceMatrix(l.o_proj.ColSlice(q0, q1)));
    ASSIGN_OR_RETURN(v.gate_proj, DeviceMatrix(l.gate_proj.RowSlice(i0, i1)));
    ASSIGN_OR_RETURN(v.up_proj, DeviceMatrix(l.up_proj.RowSlice(i0, i1)));
    ASSIGN_OR_RETURN(v.down_proj, DeviceMatrix(l.down_proj.ColSlice(i0, i1)));
    ASSIGN_OR_RETURN(v.input_norm, DeviceVector(l.input_norm));
    ASSIGN_OR_RETURN(v.post_attention_norm, DeviceVector(l.post_attention_norm));
    ASSIGN_OR_RETURN(v.q_bias, DeviceVector(l.q_bias, q0, q1));
    ASSIGN_OR_RETURN(v.k_bias, DeviceVector(l.k_bias, kv0, kv1));
    ASSIGN_OR_RETURN(v.v_bias, DeviceVector(l.v_bias, kv0, kv1));
    // A row-parallel layer's bias is added once, by rank 0.
    if (sh.rank == 0) {
      ASSIGN_OR_RETURN(v.o_bias, DeviceVector(l.o_bias));
    }
    ASSIGN_OR_RETURN(v.q_norm, DeviceVector(l.q_norm));
    ASSIGN_OR_RETURN(v.k_norm, DeviceVector(l.k_norm));
  }
  return absl::OkStatus();
}

absl::Status ModelRunner::Reserve(kernels::DeviceBuffer& buffer, size_t bytes, const char* what) {
  if (buffer.size() >= bytes) return absl::OkStatus();
  // Grow by half again, so a slowly rising batch does not reallocate every step.
  const size_t grown = std::max(bytes, buffer.size() + buffer.size() / 2);
  buffer = kernels::DeviceBuffer();  // free first: the device may be full
  ASSIGN_OR_RETURN(buffer, device_->Allocate(grown, what));
  return absl::OkStatus();
}

absl::Status ModelRunner::Validate(const StepInput& in) const {
  std::span<const SequenceInput> batch = in.sequences;
  if (batch.empty()) return absl::InvalidArgumentError("step: empty batch");
  const int64_t bs = kv_->block_size();
  for (size_t s = 0; s < batch.size(); ++s) {
    const SequenceInput& seq = batch[s];
    const int64_t n = static_cast<int64_t>(seq.token_ids.size());
    if (n == 0) return absl::InvalidArgumentError(absl::StrCat("step: sequence ", s, " has no new tokens"));
    if (seq.position < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("step: sequence ", s, " position must be >= 0, got ", seq.position));
    }
    for (int64_t i = 0; i < n; ++i) {
      if (seq.token_ids[i] < 0 || seq.token_ids[i] >= config().vocab_size) {
        return absl::InvalidArgumentError(
            absl::StrCat("step: sequence ", s, " token_ids[", i, "] = ", seq.token_ids[i],
                         " is outside the vocabulary [0, ", config().vocab_size, ")"));
      }
    }
    const int64_t end = int64_t{seq.position} + n;
    if (end > max_context_len_) {
      return absl::InvalidArgumentError(
          absl::StrCat("step: sequence ", s, " reaches position ", end - 1,
                       ", beyond the context length ", max_context_len_));
    }
    const int64_t needed = (end + bs - 1) / bs;
    if (static_cast<int64_t>(seq.block_table.size()) < needed) {
      return absl::InvalidArgumentError(absl::StrCat(
          "step: sequence ", s, " block_table has ", seq.block_table.size(),
          " blocks, positions [0, ", end, ") need ", needed));
    }
    for (int64_t b = 0; b < needed; ++b) {
      if (seq.block_table[b] < 0 || seq.block_table[b] >= kv_->num_blocks()) {
        return absl::InvalidArgumentError(
            absl::StrCat("step: sequence ", s, " block_table[", b, "] = ", seq.block_table[b],
                         " is outside the pool's ", kv_->num_blocks(), " blocks"));
      }
    }
  }
  for (size_t i = 0; i < in.block_copies.size(); ++i) {
    const auto [src, dst] = in.block_copies[i];
    if (src < 0 || src >= kv_->num_blocks() || dst < 0 || dst >= kv_->num_blocks()) {
      return absl::InvalidArgumentError(absl::StrCat("step: block copy ", src, " -> ", dst,
                                                     " is outside the pool of ",
                                                     kv_->num_blocks(), " blocks"));
    }
  }
  for (size_t i = 0; i < in.samples.size(); ++i) {
    const kernels::SampleRow& row = in.samples[i];
    if (row.num_top_logprobs < 0 || row.num_top_logprobs > kMaxTopLogprobs) {
      return absl::InvalidArgumentError(absl::StrCat("step: sample ", i, " num_top_logprobs ",
                                                     row.num_top_logprobs, " is outside [0, ",
                                                     kMaxTopLogprobs, "]"));
    }
    // Checked here for every backend: the CUDA sampler reads rows from
    // device memory, where a bad draft is only a deferred device error.
    if (row.draft_token < -1 || row.draft_token >= config().vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("step: sample ", i, " draft_token ",
                                                     row.draft_token, " is outside [-1, ",
                                                     config().vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

std::pair<int64_t, int64_t> ModelRunner::Plan(const StepInput& in, StepOutput* out) {
  std::span<const SequenceInput> batch = in.sequences;
  const int64_t S = static_cast<int64_t>(batch.size());
  const int64_t bs = kv_->block_size();
  int64_t T = 0, R = 0;
  block_table_stride_ = 1;
  step_max_query_len_ = 0;
  step_max_context_len_ = 0;
  for (const SequenceInput& seq : batch) {
    const int64_t n = static_cast<int64_t>(seq.token_ids.size());
    T += n;
    step_max_query_len_ = std::max(step_max_query_len_, n);
    step_max_context_len_ = std::max(step_max_context_len_, seq.position + n);
    R += seq.logits == LogitsMode::kAll ? n : seq.logits == LogitsMode::kLast ? 1 : 0;
    block_table_stride_ = std::max(block_table_stride_, (seq.position + n + bs - 1) / bs);
  }
  MetaLayout& l = layout_;
  l.ids = 0;
  l.positions = l.ids + T;
  l.slots = l.positions + T;
  l.query_start = l.slots + T;
  l.context_lens = l.query_start + S + 1;
  l.block_tables = l.context_lens + S;
  l.logit_rows = l.block_tables + S * block_table_stride_;
  l.copies = l.logit_rows + R;
  l.total = l.copies + 2 * static_cast<int64_t>(in.block_copies.size());
  // Rows past a sequence's last block are never read; zero keeps them in range.
  meta_host_.assign(static_cast<size_t>(l.total), 0);
  int32_t* m = meta_host_.data();

  out->first_row.assign(S, -1);
  out->vocab_size = config().vocab_size;
  int64_t t = 0, r = 0;
  for (int64_t s = 0; s < S; ++s) {
    const SequenceInput& seq = batch[s];
    const int64_t n = static_cast<int64_t>(seq.token_ids.size());
    const int64_t end = seq.position + n;
    std::copy(seq.block_table.begin(), seq.block_table.begin() + (end + bs - 1) / bs,
              m + l.block_tables + s * block_table_stride_);
    if (seq.logits != LogitsMode::kNone) out->first_row[s] = static_cast<int32_t>(r);
    for (int64_t i = 0; i < n; ++i, ++t) {
      const int32_t pos = seq.position + static_cast<int32_t>(i);
      m[l.ids + t] = seq.token_ids[i];
      m[l.positions + t] = pos;
      m[l.slots + t] =
          seq.block_table[pos / bs] * static_cast<int32_t>(bs) + pos % static_cast<int32_t>(bs);
      if (seq.logits == LogitsMode::kAll || (seq.logits == LogitsMode::kLast && i == n - 1)) {
        m[l.logit_rows + r++] = static_cast<int32_t>(t);
      }
    }
    m[l.query_start + s + 1] = static_cast<int32_t>(t);
    m[l.context_lens + s] = static_cast<int32_t>(end);
  }
  for (size_t i = 0; i < in.block_copies.size(); ++i) {
    m[l.copies + 2 * i] = in.block_copies[i].first;
    m[l.copies + 2 * i + 1] = in.block_copies[i].second;
  }
  return {T, R};
}

absl::Status ModelRunner::Linear(const float* x, int64_t ldx, const Matrix& w, const float* bias,
                                 float* y, int64_t ldy, int64_t m, bool accumulate) {
  kernels::GemmParams p;
  p.x = x;
  p.ldx = ldx;
  p.w = w.data;
  p.w_dtype = w.dtype;
  p.w_scales = w.scales;
  p.ldw = w.ld;
  p.bias = bias;
  p.y = y;
  p.ldy = ldy;
  p.m = m;
  p.n = w.rows;
  p.k = w.cols;
  p.accumulate = accumulate;
  p.bf16_dot = options_.bf16_dot;
  return ops_->Gemm(p);
}

absl::Status ModelRunner::RowParallelLinear(const float* in, int64_t ld_in, const Matrix& w,
                                            const float* bias, int64_t T) {
  const int64_t H = config().hidden_size;
  float* x = x_.as<float>();
  parallel::Communicator* comm = options_.communicator;
  if (comm == nullptr || shard_.size == 1) return Linear(in, ld_in, w, bias, x, H, T, true);
  // x + sum over ranks of partial_r (+ bias): rank 0 adds its partial (and
  // the bias, null on other ranks) to the residual, the others overwrite x
  // with theirs, and the in-place all-reduce sums them in rank order, so the
  // residual and the bias count once.
  RETURN_IF_ERROR(Linear(in, ld_in, w, bias, x, H, T, /*accumulate=*/shard_.rank == 0));
  return comm->AllReduceSum(x, x, T * H, kernels::DType::kF32);
}

absl::Status ModelRunner::Layer(int64_t li, int64_t T, int64_t S) {
  const ModelConfig& c = config();
  const LayerView& w = layers_[li];
  const int64_t H = c.hidden_size, Q = q_size_, KV = kv_size_, I = intermediate_;
  const int64_t heads = shard_.num_q_heads, kv_heads = shard_.num_kv_heads;
  const int64_t qkv_w = Q + 2 * KV;
  float* x = x_.as<float>();
  float* h = h_.as<float>();
  float* q = qkv_.as<float>();
  float* k = q + Q;
  float* v = k + KV;
  const float eps = c.rms_norm_eps;
  const float* rope_cos = rope_.as<float>();
  const float* rope_sin = rope_cos + max_context_len_ * (c.head_dim / 2);

  RETURN_IF_ERROR(At(ops_->RmsNorm(x, H, h, H, w.input_norm, T, H, eps), li, "input_layernorm"));
  RETURN_IF_ERROR(At(Linear(h, H, w.q_proj, w.q_bias, q, qkv_w, T, false), li, "q_proj"));
  RETURN_IF_ERROR(At(Linear(h, H, w.k_proj, w.k_bias, k, qkv_w, T, false), li, "k_proj"));
  RETURN_IF_ERROR(At(Linear(h, H, w.v_proj, w.v_bias, v, qkv_w, T, false), li, "v_proj"));
  if (c.qk_norm) {
    RETURN_IF_ERROR(At(ops_->RmsNormPerHead(q, qkv_w, T, heads, c.head_dim,
                                            w.q_norm, eps), li, "q_norm"));
    RETURN_IF_ERROR(At(ops_->RmsNormPerHead(k, qkv_w, T, kv_heads, c.head_dim,
                                            w.k_norm, eps), li, "k_norm"));
  }
  RETURN_IF_ERROR(At(ops_->ApplyRope(q, qkv_w, heads, k, qkv_w,
                                     kv_heads, meta(layout_.positions), T,
                                     c.head_dim, rope_cos, rope_sin, max_context_len_),
                     li, "rope"));
  RETURN_IF_ERROR(At(ops_->WriteKvCache(k, qkv_w, v, qkv_w, meta(layout_.slots), T,
                                        kv_heads, c.head_dim, kv_->k(li), kv_->v(li),
                                        kv_->num_blocks(), kv_->block_size(), kv_->dtype()),
                     li, "kv cache write"));
  kernels::PagedAttentionParams a;
  a.q = q;
  a.q_stride = qkv_w;
  a.out = attn_.as<float>();
  a.out_stride = Q;
  a.k_cache = kv_->k(li);
  a.v_cache = kv_->v(li);
  a.kv_dtype = kv_->dtype();
  a.num_blocks = kv_->num_blocks();
  a.block_size = kv_->block_size();
  a.num_seqs = S;
  a.query_start = meta(layout_.query_start);
  a.context_lens = meta(layout_.context_lens);
  a.block_tables = meta(layout_.block_tables);
  a.block_table_stride = block_table_stride_;
  a.num_heads = heads;
  a.num_kv_heads = kv_heads;
  a.head_dim = c.head_dim;
  a.sliding_window = c.sliding_window;
  a.bf16_dot = options_.bf16_dot;
  a.max_query_len = step_max_query_len_;
  a.max_context_len = step_max_context_len_;
  RETURN_IF_ERROR(At(ops_->PagedAttention(a), li, "attention"));
  // The residual add is fused into o_proj and down_proj (accumulate).
  RETURN_IF_ERROR(At(RowParallelLinear(attn_.as<float>(), Q, w.o_proj, w.o_bias, T), li, "o_proj"));

  RETURN_IF_ERROR(At(ops_->RmsNorm(x, H, h, H, w.post_attention_norm, T, H, eps), li,
                     "post_attention_layernorm"));
  float* gate = mlp_.as<float>();
  float* up = gate + I;
  RETURN_IF_ERROR(At(Linear(h, H, w.gate_proj, nullptr, gate, 2 * I, T, false), li, "gate_proj"));
  RETURN_IF_ERROR(At(Linear(h, H, w.up_proj, nullptr, up, 2 * I, T, false), li, "up_proj"));
  RETURN_IF_ERROR(At(ops_->SiluAndMul(gate, 2 * I, up, 2 * I, gate, 2 * I, T, I), li, "silu_mul"));
  RETURN_IF_ERROR(At(RowParallelLinear(gate, 2 * I, w.down_proj, nullptr, T), li, "down_proj"));
  return absl::OkStatus();
}

absl::Status ModelRunner::Step(std::span<const SequenceInput> batch, StepOutput* out) {
  return Step(StepInput{.sequences = batch, .return_logits = true}, out);
}

absl::Status ModelRunner::Step(const StepInput& in, StepOutput* out) {
  RETURN_IF_ERROR(Validate(in));
  const ModelConfig& c = config();
  const int64_t S = static_cast<int64_t>(in.sequences.size());
  const auto [T, R] = Plan(in, out);
  for (size_t i = 0; i < in.samples.size(); ++i) {
    if (in.samples[i].logits_row < 0 || in.samples[i].logits_row >= R) {
      return absl::InvalidArgumentError(absl::StrCat("step: sample ", i, " logits_row ",
                                                     in.samples[i].logits_row,
                                                     " is outside the step's ", R,
                                                     " logits rows"));
    }
  }

  // The step's metadata goes to the device in one copy; every layer reuses it.
  RETURN_IF_ERROR(Reserve(meta_, meta_host_.size() * sizeof(int32_t), "step metadata"));
  RETURN_IF_ERROR(device_->CopyToDevice(meta_.data(), meta_host_.data(),
                                        meta_host_.size() * sizeof(int32_t)));
  if (!in.block_copies.empty()) {
    RETURN_IF_ERROR(ops_->CopyBlocks(kv_->base(), kv_->num_arrays(), kv_->array_stride(),
                                     kv_->block_bytes(), kv_->num_blocks(),
                                     meta(layout_.copies),
                                     static_cast<int64_t>(in.block_copies.size())));
  }

  const int64_t H = c.hidden_size;
  const size_t f = sizeof(float);
  RETURN_IF_ERROR(Reserve(x_, T * H * f, "activations"));
  RETURN_IF_ERROR(Reserve(h_, T * H * f, "activations"));
  RETURN_IF_ERROR(Reserve(qkv_, T * (q_size_ + 2 * kv_size_) * f, "activations"));
  RETURN_IF_ERROR(Reserve(attn_, T * q_size_ * f, "activations"));
  RETURN_IF_ERROR(Reserve(mlp_, T * 2 * intermediate_ * f, "activations"));

  absl::Status s = ops_->EmbeddingGather(embed_tokens_.data, embed_tokens_.dtype, c.vocab_size,
                                         H, meta(layout_.ids), T, x_.as<float>(), H);
  if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat("step: ", s.message()));
  for (int64_t li = 0; li < c.num_hidden_layers; ++li) RETURN_IF_ERROR(Layer(li, T, S));

  out->sampled.clear();
  out->logits.clear();
  if (R == 0) return device_->Synchronize();
  // Only the rows that need logits go through the final norm and the (large)
  // lm_head.
  RETURN_IF_ERROR(Reserve(final_, R * H * f, "activations"));
  RETURN_IF_ERROR(Reserve(logits_, R * c.vocab_size * f, "logits"));
  RETURN_IF_ERROR(ops_->GatherRows(x_.as<float>(), H, meta(layout_.logit_rows), R, H,
                                   final_.as<float>(), H));
  RETURN_IF_ERROR(ops_->RmsNorm(final_.as<float>(), H, final_.as<float>(), H, final_norm_, R, H,
                                c.rms_norm_eps));
  if (shard_.size == 1) {
    RETURN_IF_ERROR(Linear(final_.as<float>(), H, lm_head_, nullptr, logits_.as<float>(),
                           c.vocab_size, R, false));
  } else {
    // Vocab-parallel lm_head: each rank writes its columns of zeroed logits
    // and an all-reduce assembles the rows (x + 0 is exact, so this is the
    // all-gather of the column blocks in one collective, with no reordering
    // pass). Simple over fast: it moves size times the bytes of a gather.
    float* logits = logits_.as<float>();
    RETURN_IF_ERROR(device_->Memset(logits, 0, R * c.vocab_size * f));
    RETURN_IF_ERROR(Linear(final_.as<float>(), H, lm_head_, nullptr, logits + shard_.vocab_begin,
                           c.vocab_size, R, false));
    RETURN_IF_ERROR(
        options_.communicator->AllReduceSum(logits, logits, R * c.vocab_size, kernels::DType::kF32));
    // Rank 0 draws the tokens and returns logits; the others are done.
    if (shard_.rank != 0) return device_->Synchronize();
  }
  RETURN_IF_ERROR(SampleRows(in, R, out));
  if (in.return_logits) {
    out->logits.resize(static_cast<size_t>(R * c.vocab_size));
    RETURN_IF_ERROR(device_->CopyToHost(out->logits.data(), logits_.data(), out->logits.size() * f));
  }
  return device_->Synchronize();
}

absl::Status ModelRunner::SampleRows(const StepInput& in, int64_t num_logits_rows,
                                     StepOutput* out) {
  const int64_t n = static_cast<int64_t>(in.samples.size());
  if (n == 0) return absl::OkStatus();
  int32_t max_top = 0;
  for (const kernels::SampleRow& row : in.samples) max_top = std::max(max_top, row.num_top_logprobs);
  RETURN_IF_ERROR(Reserve(sample_rows_, n * sizeof(kernels::SampleRow), "sampling rows"));
  RETURN_IF_ERROR(device_->CopyToDevice(sample_rows_.data(), in.samples.data(),
                                        n * sizeof(kernels::SampleRow)));
  const size_t adjust_bytes = in.adjust.size() * sizeof(kernels::TokenAdjust);
  RETURN_IF_ERROR(Reserve(sample_adjust_, adjust_bytes, "sampling adjustments"));
  RETURN_IF_ERROR(device_->CopyToDevice(sample_adjust_.data(), in.adjust.data(), adjust_bytes));
  // Outputs, one buffer: tokens [n], logprobs [n], top tokens and top
  // logprobs [n, max_top].
  const size_t out_elems = static_cast<size_t>(n * (2 + 2 * max_top));
  RETURN_IF_ERROR(Reserve(sample_out_, out_elems * 4, "sampling outputs"));
  int32_t* tokens = sample_out_.as<int32_t>();
  float* logprobs = reinterpret_cast<float*>(tokens + n);
  int32_t* top_tokens = reinterpret_cast<int32_t*>(logprobs + n);
  float* top_logprobs = reinterpret_cast<float*>(top_tokens + n * max_top);

  kernels::SampleParams p;
  p.logits = logits_.as<float>();
  p.logits_stride = config().vocab_size;
  p.num_logits_rows = num_logits_rows;
  p.vocab = config().vocab_size;
  p.rows = sample_rows_.as<kernels::SampleRow>();
  p.num_rows = n;
  p.adjust = sample_adjust_.as<kernels::TokenAdjust>();
  p.num_adjust = static_cast<int64_t>(in.adjust.size());
  p.tokens = tokens;
  p.logprobs = logprobs;
  p.top_tokens = top_tokens;
  p.top_logprobs = top_logprobs;
  p.max_top_logprobs = max_top;
  RETURN_IF_ERROR(ops_->Sample(p));

  // One copy back: the tokens alone, or the whole output buffer when a row
  // asked for logprobs.
  bool any_logprobs = false;
  for (const kernels::SampleRow& row : in.samples) any_logprobs |= row.logprobs;
  const size_t back = any_logprobs ? out_elems : static_cast<size_t>(n);
  sample_out_host_.resize(out_elems);
  RETURN_IF_ERROR(device_->CopyToHost(sample_out_host_.data(), tokens, back * 4));
  const int32_t* host = sample_out_host_.data();
  out->sampled = CollectDraws(in.samples, host, reinterpret_cast<const float*>(host + n),
                              host + 2 * n, reinterpret_cast<const float*>(host + 2 * n + n * max_top),
                              max_top);
  return absl::OkStatus();
}

}  // namespace kestrel::model
