// The CUDA paged attention (decode with split-K, prefill tiles) against the
// dense double-precision reference (kernels/cpu/reference.h) on awkward
// shapes: head dims 64/80/128 (and 7, 256, 512), block sizes 16/32 (and 7),
// GQA 1/4/8, batches 1/3/17, contexts across split-K partition and key tile
// boundaries, mixed prefill + decode batches, sliding windows, BF16 caches,
// shuffled physical blocks. Unused cache slots, q padding and unused table
// entries hold NaN or bad ids, so any read outside the mask shows up; out
// padding must stay untouched. Through the CUDA runtime API only, so the same
// source runs on a GPU (attention_test_gpu).
#include "kernels/cuda/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/reference.h"
#include "kernels/cpu/test_util.h"
#include "kernels/dtype.h"

namespace kestrel::cuda {
namespace {

using kernels::DType;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// The layout of DeviceError (kernels/cuda/device_error.h), which this file
// cannot include: its device function does not compile in the host-only
// translation units of the GPU build. kBlockId = 3 there.
struct ErrorRecord {
  int32_t code = 0;
  int32_t padding = 0;
  int64_t index = 0;
  int64_t value = 0;
  int64_t limit = 0;
};
constexpr int32_t kBlockIdCode = 3;

// A device copy of a host vector, freed at scope exit.
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(const std::vector<T>& host) : size_(host.size()) {
    REQUIRE(cudaMalloc(&ptr_, std::max<size_t>(1, size_) * sizeof(T)) == cudaSuccess);
    if (size_ > 0) {
      REQUIRE(cudaMemcpy(ptr_, host.data(), size_ * sizeof(T), cudaMemcpyHostToDevice) ==
              cudaSuccess);
    }
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { cudaFree(ptr_); }
  T* get() const { return static_cast<T*>(ptr_); }
  std::vector<T> Download() const {
    std::vector<T> host(size_);
    if (size_ > 0) {
      REQUIRE(cudaMemcpy(host.data(), ptr_, size_ * sizeof(T), cudaMemcpyDeviceToHost) ==
              cudaSuccess);
    }
    return host;
  }

 private:
  void* ptr_ = nullptr;
  size_t size_;
};

struct Seq {
  int ctx;    // tokens in the cache after this step
  int n_new;  // new tokens this step
};

struct Case {
  int heads = 4, kv_heads = 1, d = 64, block_size = 16, window = 0;
  std::vector<Seq> seqs;
  DType kv_dtype = DType::kF32;
  float scale = 0.0f;
  int partition_tokens = 0;  // decode split-K; 0: automatic
};

std::string Describe(const Case& c) {
  std::string s = "heads=" + std::to_string(c.heads) + " kv=" + std::to_string(c.kv_heads) +
                  " d=" + std::to_string(c.d) + " bs=" + std::to_string(c.block_size) +
                  " window=" + std::to_string(c.window) +
                  " dtype=" + kernels::DTypeName(c.kv_dtype) +
                  " partition=" + std::to_string(c.partition_tokens) + " seqs=";
  for (const Seq& q : c.seqs) s += "(" + std::to_string(q.ctx) + "," + std::to_string(q.n_new) + ")";
  return s;
}

// A batch in host memory: a paged cache on shuffled blocks with NaN in every
// unused slot, and the dense keys/values the reference reads.
struct Batch {
  int64_t num_blocks = 0, table_stride = 0, q_stride = 0, out_stride = 0, num_tokens = 0;
  int32_t max_query_len = 0, max_context_len = 0;
  std::vector<float> q, out;
  std::vector<float> k_cache, v_cache;   // F32 layout (converted for BF16)
  std::vector<int32_t> query_start, context_lens, tables;
  std::vector<std::vector<float>> keys, values;  // per sequence [ctx, kv_heads, d]
};

Batch Build(const Case& c, uint32_t seed) {
  Batch b;
  const int64_t d = c.d, kvh = c.kv_heads, bs = c.block_size;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  int64_t needed = 0;
  b.query_start.push_back(0);
  for (const Seq& s : c.seqs) {
    needed += (s.ctx + bs - 1) / bs;
    b.table_stride = std::max<int64_t>(b.table_stride, (s.ctx + bs - 1) / bs);
    b.query_start.push_back(b.query_start.back() + s.n_new);
    b.context_lens.push_back(s.ctx);
    b.max_query_len = std::max(b.max_query_len, s.n_new);
    b.max_context_len = std::max(b.max_context_len, s.ctx);
  }
  b.table_stride += 2;  // entries past a sequence's blocks hold bad ids
  b.num_blocks = needed + 3;  // spare blocks stay NaN
  std::vector<int32_t> physical(static_cast<size_t>(b.num_blocks));
  std::iota(physical.begin(), physical.end(), 0);
  std::shuffle(physical.begin(), physical.end(), rng);
  b.tables.assign(static_cast<size_t>(c.seqs.size() * b.table_stride), -7);
  const size_t cache_elems = static_cast<size_t>(b.num_blocks * kvh * d * bs);
  b.k_cache.assign(cache_elems, kNaN);
  b.v_cache.assign(cache_elems, kNaN);
  size_t next = 0;
  for (size_t s = 0; s < c.seqs.size(); ++s) {
    const int64_t ctx = c.seqs[s].ctx;
    int32_t* table = b.tables.data() + s * b.table_stride;
    for (int64_t lb = 0; lb < (ctx + bs - 1) / bs; ++lb) table[lb] = physical[next++];
    std::vector<float> keys(static_cast<size_t>(ctx * kvh * d)), values(keys.size());
    for (int64_t pos = 0; pos < ctx; ++pos) {
      const int64_t blk = table[pos / bs], off = pos % bs;
      for (int64_t h = 0; h < kvh; ++h) {
        for (int64_t i = 0; i < d; ++i) {
          float kv = dist(rng), vv = dist(rng);
          if (c.kv_dtype == DType::kBF16) {  // what a BF16 cache holds
            kv = kernels::Bf16ToF32(kernels::F32ToBf16(kv));
            vv = kernels::Bf16ToF32(kernels::F32ToBf16(vv));
          }
          keys[static_cast<size_t>((pos * kvh + h) * d + i)] = kv;
          values[static_cast<size_t>((pos * kvh + h) * d + i)] = vv;
          b.k_cache[static_cast<size_t>(((blk * kvh + h) * d + i) * bs + off)] = kv;
          b.v_cache[static_cast<size_t>(((blk * kvh + h) * bs + off) * d + i)] = vv;
        }
      }
    }
    b.keys.push_back(std::move(keys));
    b.values.push_back(std::move(values));
  }
  b.num_tokens = b.query_start.back();
  b.q_stride = c.heads * d + 3;
  b.out_stride = c.heads * d + 5;
  b.q.assign(static_cast<size_t>(std::max<int64_t>(1, b.num_tokens) * b.q_stride), kNaN);
  for (int64_t t = 0; t < b.num_tokens; ++t) {
    for (int64_t e = 0; e < c.heads * d; ++e) b.q[static_cast<size_t>(t * b.q_stride + e)] = dist(rng);
  }
  b.out.assign(static_cast<size_t>(std::max<int64_t>(1, b.num_tokens) * b.out_stride), -99.0f);
  return b;
}

// The reference output [num_tokens, out_stride] (padding -99).
std::vector<float> Reference(const Case& c, const Batch& b) {
  std::vector<float> want = b.out;
  const float scale = c.scale > 0.0f ? c.scale : 1.0f / std::sqrt(static_cast<float>(c.d));
  const int64_t row = static_cast<int64_t>(c.heads) * c.d;
  for (size_t s = 0; s < c.seqs.size(); ++s) {
    const int64_t n_new = c.seqs[s].n_new;
    if (n_new == 0) continue;
    std::vector<float> q(static_cast<size_t>(n_new * row)), out(q.size());
    for (int64_t t = 0; t < n_new; ++t) {
      std::copy_n(b.q.begin() + (b.query_start[s] + t) * b.q_stride, row, q.begin() + t * row);
    }
    kernels::reference::Attention(q.data(), b.keys[s].data(), b.values[s].data(), out.data(),
                                  n_new, c.seqs[s].ctx, c.heads, c.kv_heads, c.d, scale,
                                  c.window);
    for (int64_t t = 0; t < n_new; ++t) {
      std::copy_n(out.begin() + t * row, row, want.begin() + (b.query_start[s] + t) * b.out_stride);
    }
  }
  return want;
}

std::vector<uint16_t> ToBf16Bits(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = kernels::F32ToBf16(v[i]);  // NaN stays NaN
  return out;
}

struct Result {
  cudaError_t status = cudaSuccess;
  std::vector<float> out;
  ErrorRecord error;
};

// Uploads the batch, runs PagedAttention, downloads out and the error.
// `tamper` may edit the parameters (error tests).
template <typename Tamper>
Result Run(const Case& c, Batch& b, Tamper tamper) {
  DeviceBuffer<float> q(b.q), out(b.out);
  DeviceBuffer<int32_t> query_start(b.query_start), context_lens(b.context_lens),
      tables(b.tables);
  DeviceBuffer<ErrorRecord> error(std::vector<ErrorRecord>(1));
  const bool bf16 = c.kv_dtype == DType::kBF16;
  DeviceBuffer<float> k32(bf16 ? std::vector<float>() : b.k_cache);
  DeviceBuffer<float> v32(bf16 ? std::vector<float>() : b.v_cache);
  DeviceBuffer<uint16_t> k16(bf16 ? ToBf16Bits(b.k_cache) : std::vector<uint16_t>());
  DeviceBuffer<uint16_t> v16(bf16 ? ToBf16Bits(b.v_cache) : std::vector<uint16_t>());
  const size_t ws_bytes = PagedAttentionWorkspaceBytes(
      static_cast<int64_t>(c.seqs.size()), c.heads, c.d, b.max_context_len, c.partition_tokens);
  // NaN-filled, so a partition the reduce reads but nobody wrote shows up.
  DeviceBuffer<float> workspace(std::vector<float>(ws_bytes / sizeof(float), kNaN));

  PagedAttentionParams p;
  p.q = q.get();
  p.q_stride = b.q_stride;
  p.out = out.get();
  p.out_stride = b.out_stride;
  p.k_cache = bf16 ? static_cast<const void*>(k16.get()) : k32.get();
  p.v_cache = bf16 ? static_cast<const void*>(v16.get()) : v32.get();
  p.kv_dtype = c.kv_dtype;
  p.num_blocks = b.num_blocks;
  p.block_size = c.block_size;
  p.num_seqs = static_cast<int64_t>(c.seqs.size());
  p.query_start = query_start.get();
  p.context_lens = context_lens.get();
  p.block_tables = tables.get();
  p.block_table_stride = b.table_stride;
  p.num_heads = c.heads;
  p.num_kv_heads = c.kv_heads;
  p.head_dim = c.d;
  p.scale = c.scale;
  p.sliding_window = c.window;
  p.max_query_len = b.max_query_len;
  p.max_context_len = b.max_context_len;
  p.workspace = ws_bytes > 0 ? workspace.get() : nullptr;
  p.workspace_bytes = ws_bytes;
  p.partition_tokens = c.partition_tokens;
  p.error = reinterpret_cast<DeviceError*>(error.get());
  tamper(p);
  Result r;
  r.status = PagedAttention(p, nullptr);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  r.out = out.Download();
  r.error = error.Download()[0];
  return r;
}

Result Run(const Case& c, Batch& b) {
  return Run(c, b, [](PagedAttentionParams&) {});
}

// Runs the case and compares with the reference; padding must stay -99.
void Check(const Case& c, uint32_t seed = 1) {
  INFO(Describe(c));
  Batch b = Build(c, seed);
  const Result r = Run(c, b);
  REQUIRE(r.status == cudaSuccess);
  CHECK(r.error.code == 0);
  const std::vector<float> want = Reference(c, b);
  CHECK(kernels::testing::CompareClose(r.out.data(), want.data(), want.size(), 1e-5f, 1e-5f) ==
        "");
}

TEST_CASE("CUDA decode attention matches the reference", "[cuda][attention]") {
  for (int d : {64, 80, 128}) {
    for (int bs : {16, 32}) {
      for (auto [heads, kv] : {std::pair{3, 3}, std::pair{8, 2}, std::pair{8, 1}}) {
        Case c;
        c.heads = heads;
        c.kv_heads = kv;
        c.d = d;
        c.block_size = bs;
        c.seqs = {{1, 1}, {bs + 1, 1}, {70, 1}};
        Check(c, static_cast<uint32_t>(d * 100 + bs + heads));
      }
    }
  }
}

TEST_CASE("CUDA decode attention splits long contexts", "[cuda][attention]") {
  // Contexts on both sides of key tile (32) and partition (512, 128)
  // boundaries, forced and automatic partitions.
  for (int partition : {512, 128, 0}) {
    Case c;
    c.heads = 2;
    c.kv_heads = 1;
    c.d = 64;
    c.partition_tokens = partition;
    c.seqs = {{1, 1}, {15, 1}, {16, 1}, {17, 1}, {511, 1}, {512, 1}, {513, 1}, {1100, 1}};
    Check(c, 7 + partition);
  }
  // GQA 8 at head dim 128 over two partitions, one sequence idle.
  Case c;
  c.heads = 8;
  c.kv_heads = 1;
  c.d = 128;
  c.block_size = 32;
  c.partition_tokens = 256;
  c.seqs = {{300, 1}, {9, 0}, {257, 1}};
  Check(c, 11);
}

TEST_CASE("CUDA decode attention on a batch of 17", "[cuda][attention]") {
  Case c;
  c.heads = 8;
  c.kv_heads = 2;
  c.d = 128;
  std::mt19937 rng(5);
  for (int s = 0; s < 17; ++s) c.seqs.push_back({1 + static_cast<int>(rng() % 150), 1});
  Check(c, 17);
  c.partition_tokens = 64;
  Check(c, 18);
}

TEST_CASE("CUDA prefill attention matches the reference on mixed batches", "[cuda][attention]") {
  for (int d : {64, 80, 128}) {
    for (int bs : {16, 32}) {
      for (auto [heads, kv] : {std::pair{2, 2}, std::pair{4, 1}, std::pair{8, 1}}) {
        Case c;
        c.heads = heads;
        c.kv_heads = kv;
        c.d = d;
        c.block_size = bs;
        // A whole prompt, a chunk after a cached prefix, decodes, an idle
        // sequence.
        c.seqs = {{37, 37}, {75, 20}, {17, 1}, {5, 0}, {33, 1}};
        Check(c, static_cast<uint32_t>(d * 10 + bs + heads));
      }
    }
  }
}

TEST_CASE("CUDA prefill attention on a batch of 17 and 3", "[cuda][attention]") {
  Case c;
  c.heads = 4;
  c.kv_heads = 1;
  c.d = 64;
  std::mt19937 rng(9);
  for (int s = 0; s < 17; ++s) {
    const int n_new = 1 + static_cast<int>(rng() % 6);
    c.seqs.push_back({n_new + static_cast<int>(rng() % 40), n_new});
  }
  Check(c, 23);
  c.seqs = {{130, 70}, {1, 1}, {64, 64}};
  c.heads = 8;
  c.kv_heads = 8;
  Check(c, 24);
}

TEST_CASE("CUDA attention with a sliding window", "[cuda][attention]") {
  for (int window : {1, 7, 40, 100}) {
    Case c;
    c.heads = 4;
    c.kv_heads = 2;
    c.d = 80;
    c.window = window;
    c.seqs = {{90, 1}, {45, 1}, {3, 1}};  // decode
    Check(c, 31 + window);
    c.partition_tokens = 32;
    Check(c, 32 + window);
    c.seqs = {{90, 50}, {45, 1}, {60, 9}};  // prefill
    Check(c, 33 + window);
  }
}

TEST_CASE("CUDA attention with a BF16 cache", "[cuda][attention]") {
  Case c;
  c.heads = 8;
  c.kv_heads = 2;
  c.d = 128;
  c.kv_dtype = DType::kBF16;
  c.seqs = {{40, 1}, {100, 1}, {1, 1}};
  Check(c, 41);
  c.partition_tokens = 32;
  Check(c, 42);
  c.seqs = {{40, 40}, {100, 3}, {1, 1}};
  Check(c, 43);
  c.d = 80;
  c.block_size = 32;
  Check(c, 44);
}

TEST_CASE("CUDA attention on other head dims, block sizes and scales", "[cuda][attention]") {
  // Head dim 7 and block size 7: no vector loads; 256 and 512: the large
  // instantiations; an explicit scale.
  for (auto [d, bs] : {std::pair{7, 7}, std::pair{7, 16}, std::pair{256, 16},
                       std::pair{512, 32}, std::pair{64, 7}}) {
    Case c;
    c.heads = 4;
    c.kv_heads = 2;
    c.d = d;
    c.block_size = bs;
    c.seqs = {{20, 1}, {50, 1}};
    Check(c, 51 + d);
    c.seqs = {{20, 6}, {50, 1}};
    Check(c, 52 + d);
  }
  Case c;
  c.heads = 4;
  c.kv_heads = 4;
  c.scale = 0.3f;
  c.seqs = {{20, 1}, {50, 1}};
  Check(c, 61);
  c.seqs = {{20, 20}, {50, 1}};
  Check(c, 62);
}

TEST_CASE("CUDA attention is stable with large logits", "[cuda][attention]") {
  // Scores of several hundred: exp overflows unless every tile's maximum is
  // right.
  Case c;
  c.heads = 8;
  c.kv_heads = 2;
  c.scale = 60.0f;
  c.seqs = {{70, 1}, {200, 1}, {33, 1}};
  for (int partition : {0, 64}) {
    c.partition_tokens = partition;
    INFO(Describe(c));
    Batch b = Build(c, 65 + partition);
    const Result r = Run(c, b);
    REQUIRE(r.status == cudaSuccess);
    const std::vector<float> want = Reference(c, b);
    CHECK(kernels::testing::CompareClose(r.out.data(), want.data(), want.size(), 1e-4f, 1e-4f) ==
          "");
  }
  c.seqs = {{70, 40}, {200, 3}, {33, 1}};
  INFO(Describe(c));
  Batch b = Build(c, 66);
  const Result r = Run(c, b);
  REQUIRE(r.status == cudaSuccess);
  const std::vector<float> want = Reference(c, b);
  CHECK(kernels::testing::CompareClose(r.out.data(), want.data(), want.size(), 1e-4f, 1e-4f) ==
        "");
}

TEST_CASE("CUDA attention reports a bad block id and stays finite", "[cuda][attention]") {
  for (int n_new : {1, 4}) {  // decode, prefill
    INFO("n_new=" << n_new);
    Case c;
    c.heads = 4;
    c.kv_heads = 2;
    c.seqs = {{40, n_new}, {20, n_new}};
    Batch b = Build(c, 71);
    b.tables[static_cast<size_t>(b.table_stride + 1)] = static_cast<int32_t>(b.num_blocks);
    const Result r = Run(c, b);
    REQUIRE(r.status == cudaSuccess);
    CHECK(r.error.code == kBlockIdCode);
    CHECK(r.error.index == b.table_stride + 1);
    CHECK(r.error.value == b.num_blocks);
    CHECK(r.error.limit == b.num_blocks);
    for (float x : r.out) CHECK(std::isfinite(x));
    // The other sequence is unaffected.
    const std::vector<float> want = Reference(c, b);
    const size_t first = static_cast<size_t>(n_new * b.out_stride);
    CHECK(kernels::testing::CompareClose(r.out.data(), want.data(), first, 1e-5f, 1e-5f) == "");
  }
}

TEST_CASE("CUDA attention skips sequences that break the host's bounds", "[cuda][attention]") {
  Case c;
  c.heads = 2;
  c.kv_heads = 1;
  c.seqs = {{30, 1}, {20, 1}};
  Batch b = Build(c, 81);
  const Result r = Run(c, b, [](PagedAttentionParams& p) { p.max_context_len = 25; });
  REQUIRE(r.status == cudaSuccess);
  CHECK(r.error.code == kBlockIdCode);
  CHECK(r.error.index == 0);
  CHECK(r.error.value == 30);
  CHECK(r.error.limit == 25);
  for (int64_t e = 0; e < b.out_stride; ++e) CHECK(r.out[static_cast<size_t>(e)] == -99.0f);
  const std::vector<float> want = Reference(c, b);
  CHECK(kernels::testing::CompareClose(r.out.data() + b.out_stride, want.data() + b.out_stride,
                                       static_cast<size_t>(b.out_stride), 1e-5f, 1e-5f) == "");
}

TEST_CASE("CUDA attention rejects bad arguments", "[cuda][attention]") {
  Case c;
  c.heads = 4;
  c.kv_heads = 2;
  c.seqs = {{40, 1}, {600, 1}};
  c.partition_tokens = 128;
  Batch b = Build(c, 91);
  using P = PagedAttentionParams;
  const std::vector<std::pair<const char*, void (*)(P&)>> bad = {
      {"num_seqs<0", [](P& p) { p.num_seqs = -1; }},
      {"num_heads=0", [](P& p) { p.num_heads = 0; }},
      {"kv heads do not divide", [](P& p) { p.num_kv_heads = 3; }},
      {"head_dim=0", [](P& p) { p.head_dim = 0; }},
      {"head_dim=513", [](P& p) { p.head_dim = 513; }},
      {"block_size=0", [](P& p) { p.block_size = 0; }},
      {"block_size=257", [](P& p) { p.block_size = 257; }},
      {"q_stride", [](P& p) { p.q_stride = p.num_heads * p.head_dim - 1; }},
      {"out_stride", [](P& p) { p.out_stride = p.num_heads * p.head_dim - 1; }},
      {"kv_dtype", [](P& p) { p.kv_dtype = DType::kF16; }},
      {"sliding_window", [](P& p) { p.sliding_window = -1; }},
      {"scale<0", [](P& p) { p.scale = -1.0f; }},
      {"scale=nan", [](P& p) { p.scale = kNaN; }},
      {"max_context_len<max_query_len", [](P& p) { p.max_context_len = 0; }},
      {"table stride", [](P& p) { p.block_table_stride = 600 / 16; }},
      {"partition_tokens", [](P& p) { p.partition_tokens = 100; }},
      {"workspace null", [](P& p) { p.workspace = nullptr; }},
      {"workspace short", [](P& p) { p.workspace_bytes -= 4; }},
      {"q null", [](P& p) { p.q = nullptr; }},
      {"block_tables null", [](P& p) { p.block_tables = nullptr; }},
  };
  for (const auto& [name, tamper] : bad) {
    INFO(name);
    const Result r = Run(c, b, tamper);
    CHECK(r.status == cudaErrorInvalidValue);
    for (float x : r.out) REQUIRE(x == -99.0f);
  }
  // Nothing to do is not an error.
  CHECK(Run(c, b, [](P& p) { p.num_seqs = 0; }).status == cudaSuccess);
  CHECK(Run(c, b, [](P& p) { p.max_query_len = 0; }).status == cudaSuccess);
}

TEST_CASE("CUDA attention workspace sizes", "[cuda][attention]") {
  CHECK(PagedAttentionWorkspaceBytes(4, 8, 128, 512) == 0);  // one partition
  CHECK(PagedAttentionWorkspaceBytes(4, 8, 128, 100, 32) == 4 * 4 * 8 * 130 * sizeof(float));
  CHECK(PagedAttentionWorkspaceBytes(0, 8, 128, 4096) == 0);
  CHECK(PagedAttentionWorkspaceBytes(1, 8, 128, 4096) >= 8 * 130 * sizeof(float) * 2);
}

}  // namespace
}  // namespace kestrel::cuda
