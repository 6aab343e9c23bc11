// Microbenchmark for the CPU kernels: memory read bandwidth, batch-1 GEMV
// (memory-bound decode) as GB/s and % of that bandwidth, and batched GEMM
// GFLOP/s (decode batches 8/32, prefill M=512), plus paged attention. Every
// number is the median of --reps repetitions. Weights rotate over enough
// copies to exceed the last-level cache, as a model's layers do.
//
//   bazel run -c opt //kernels/cpu:kernels_bench -- --threads=2
#include <sys/mman.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/flags.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/bandwidth.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/dtype.h"
#include "kernels/ops.h"

namespace kestrel::kernels::cpu {
namespace {

// The command line; initial values are the defaults.
struct Flags {
  int32_t threads = 2;
  int32_t reps = 15;
  int64_t bandwidth_mib = 512;
  int64_t weight_pool_mib = 256;
  bool cpu_clock = false;
  bool quick = false;
  std::string only;
};
Flags g_flags;  // set once in main() before anything runs

void DeclareFlags(FlagSet& flags, Flags& f) {
  flags.Add("threads", &f.threads, "N", "Threads in the pool (including the caller)");
  flags.Add("reps", &f.reps, "N", "Repetitions per measurement (median reported)");
  flags.Add("bandwidth-mib", &f.bandwidth_mib, "MIB", "Buffer size for the read-bandwidth test");
  flags.Add("weight-pool-mib", &f.weight_pool_mib, "MIB",
            "Total rotating weight copies for GEMV (must exceed the LLC)");
  flags.Add("cpu-clock", &f.cpu_clock,
            "Time with the process CPU clock instead of the wall clock: load-independent on a "
            "shared machine, but only meaningful with --threads=1 (workers spin)");
  flags.Add("quick", &f.quick, "Fewer shapes (for a smoke run)");
  flags.Add("only", &f.only, "SECTIONS",
            "Run only these sections (comma separated: gemv,gemm,attention); the bandwidth is "
            "always measured");
}

using Clock = std::chrono::steady_clock;

// Anonymous, huge-page-advised, zero-filled memory (how the loader holds weights).
struct Buffer {
  void* p = nullptr;
  size_t bytes = 0;
  explicit Buffer(size_t n) : bytes(n) {
    p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      std::perror("mmap");
      std::exit(1);
    }
    madvise(p, n, MADV_HUGEPAGE);
  }
  ~Buffer() { munmap(p, bytes); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double Now() {
  if (g_flags.cpu_clock) {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
  }
  return std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
}

template <typename F>
double MedianSeconds(int reps, F&& f) {
  f(0);  // warm-up
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const double start = Now();
    f(r + 1);
    t.push_back(Now() - start);
  }
  return Median(t);
}

void Check(const absl::Status& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
    std::exit(1);
  }
}

// The GEMV rows are timed per weight matrix (one ParallelFor each), so the
// probe times 32 MiB slices the same way: the two are comparable.
double PrintReadBandwidth(ThreadPool* pool, int reps) {
  const uint64_t bytes = static_cast<uint64_t>(g_flags.bandwidth_mib) << 20;
  auto r = kernels::cpu::MeasureReadBandwidth(
      pool, {.bytes = bytes, .slice_bytes = uint64_t{32} << 20}, reps);
  if (!r.ok()) {
    std::fprintf(stderr, "%s\n", r.status().ToString().c_str());
    std::exit(1);
  }
  std::printf(
      "memory read bandwidth: %.1f GB/s (median; %.1f-%.1f; %s loads, %llu MiB in 32 MiB slices, "
      "%d threads, %d reps)\n",
      r->median_gbs, r->min_gbs, r->max_gbs, std::string(IsaName(r->isa)).c_str(),
      static_cast<unsigned long long>(bytes >> 20), pool->num_threads(), reps);
  return r->median_gbs;
}

struct WeightSet {
  std::unique_ptr<Buffer> buf;
  int copies;
  size_t bytes_each;
  const void* copy(int i) const {
    return static_cast<const char*>(buf->p) + static_cast<size_t>(i % copies) * bytes_each;
  }
};

WeightSet MakeWeights(int64_t n, int64_t k, DType t, size_t min_total) {
  WeightSet w;
  w.bytes_each = static_cast<size_t>(n * k * DTypeSize(t));
  w.copies = static_cast<int>(std::max<size_t>(1, (min_total + w.bytes_each - 1) / w.bytes_each));
  w.buf = std::make_unique<Buffer>(w.bytes_each * static_cast<size_t>(w.copies));
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-0.05f, 0.05f);
  const int64_t elems = n * k;
  for (int c = 0; c < w.copies; ++c) {
    char* base = static_cast<char*>(w.buf->p) + static_cast<size_t>(c) * w.bytes_each;
    for (int64_t i = 0; i < elems; ++i) {
      const float v = dist(rng);
      if (t == DType::kF32) {
        reinterpret_cast<float*>(base)[i] = v;
      } else if (t == DType::kI8) {
        reinterpret_cast<int8_t*>(base)[i] = static_cast<int8_t>(v * 2540.0f);  // [-127, 127]
      } else {
        reinterpret_cast<uint16_t*>(base)[i] = t == DType::kBF16 ? F32ToBf16(v) : F32ToF16(v);
      }
    }
  }
  return w;
}

void BenchGemm(ThreadPool* pool, int reps, double bandwidth, int64_t m, int64_t n, int64_t k,
               DType t, Isa isa, bool bf16_dot, const WeightSet& w) {
  if (!IsaSupported(isa)) return;
  std::vector<float> x(static_cast<size_t>(m * k)), y(static_cast<size_t>(m * n));
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> dist(-1, 1);
  for (float& v : x) v = dist(rng);
  const std::vector<float> scales(static_cast<size_t>(n), 0.05f / 127);  // int8 weights
  GemmParams p{.x = x.data(), .ldx = k, .w = nullptr, .w_dtype = t, .w_scales = scales.data(),
               .ldw = k, .bias = nullptr, .y = y.data(), .ldy = n, .m = m, .n = n, .k = k,
               .accumulate = false, .bf16_dot = bf16_dot};
  const double sec = MedianSeconds(reps, [&](int r) {
    p.w = w.copy(r);
    Check(Gemm(p, pool, isa));
  });
  const double wbytes = static_cast<double>(n * k * DTypeSize(t));
  const double gbs = wbytes / sec / 1e9;
  const double gflops = 2.0 * m * n * k / sec / 1e9;
  std::printf("  M=%-4lld N=%-5lld K=%-5lld %-4s %-6s%s  %9.1f us  %7.1f GB/s weights (%5.1f%% of bw)  %7.1f GFLOP/s\n",
              static_cast<long long>(m), static_cast<long long>(n), static_cast<long long>(k),
              std::string(DTypeName(t)).c_str(), std::string(IsaName(isa)).c_str(),
              bf16_dot ? " bf16dot" : "        ", sec * 1e6, gbs, 100.0 * gbs / bandwidth,
              gflops);
}

struct AttentionShape {
  int64_t heads = 32, kv_heads = 4, d = 64;  // TinyLlama
  DType kv = DType::kF32;                    // cache element type
  bool bf16_dot = false;                     // PagedAttentionParams::bf16_dot
};

// Reports the time and, for decode, the K/V bytes read per second. Decode
// reps alternate with a pass of `probe` (the bandwidth in the same seconds),
// and the share of the limit is the median of the per-rep ratios, with their
// range. A cache smaller than 64 MiB partly stays in the last-level cache,
// so its share is not a memory figure (marked "in cache").
void BenchAttention(ThreadPool* pool, BandwidthProbe* probe, int reps, int64_t batch,
                    int64_t ctx, int64_t n_new, AttentionShape shape = {}) {
  const int64_t heads = shape.heads, kv_heads = shape.kv_heads, d = shape.d, bs = 16;
  const int64_t blocks_per_seq = (ctx + bs - 1) / bs;
  const int64_t num_blocks = batch * blocks_per_seq;
  // Every element 0.01 (as F32, or as bf16 0x3c24 in both halves of each
  // float's bytes); room for F32 either way. Huge-page-advised anonymous
  // memory, as the server's KV pool is (CpuDevice::AllocateRaw).
  const size_t cache_floats = static_cast<size_t>(num_blocks * bs * kv_heads * d);
  const Buffer k_buf(cache_floats * sizeof(float)), v_buf(cache_floats * sizeof(float));
  float* kc = static_cast<float*>(k_buf.p);
  float* vc = static_cast<float*>(v_buf.p);
  const float f32_fill = 0.01f;
  uint32_t fill = 0x3c243c24u;
  if (shape.kv != DType::kBF16) std::memcpy(&fill, &f32_fill, sizeof fill);
  for (size_t i = 0; i < cache_floats; ++i) {
    std::memcpy(kc + i, &fill, sizeof fill);
    std::memcpy(vc + i, &fill, sizeof fill);
  }
  std::vector<int32_t> table(static_cast<size_t>(num_blocks));
  for (int64_t i = 0; i < num_blocks; ++i) table[i] = static_cast<int32_t>(i);
  std::vector<int32_t> qs(static_cast<size_t>(batch + 1)), ctxs(static_cast<size_t>(batch), ctx);
  for (int64_t s = 0; s <= batch; ++s) qs[s] = static_cast<int32_t>(s * n_new);
  std::vector<float> q(static_cast<size_t>(batch * n_new * heads * d), 0.1f), out(q.size());
  PagedAttentionParams p{.q = q.data(), .q_stride = heads * d, .out = out.data(),
                         .out_stride = heads * d, .k_cache = kc, .v_cache = vc,
                         .num_blocks = num_blocks, .block_size = bs, .num_seqs = batch,
                         .query_start = qs.data(), .context_lens = ctxs.data(),
                         .block_tables = table.data(), .block_table_stride = blocks_per_seq,
                         .num_heads = heads, .num_kv_heads = kv_heads, .head_dim = d};
  p.kv_dtype = shape.kv;
  p.bf16_dot = shape.bf16_dot;
  const double kv_bytes =
      2.0 * batch * ctx * kv_heads * d * static_cast<double>(DTypeSize(shape.kv));
  std::vector<double> ratios, times;
  double sec = MedianSeconds(reps, [&](int r) {
    if (n_new == 1 && r > 0) {
      const double bw = probe->Measure(1).median_gbs;
      const double start = Now();
      Check(PagedAttention(p, pool));
      times.push_back(Now() - start);
      ratios.push_back(kv_bytes / times.back() / 1e9 / bw);
      return;
    }
    Check(PagedAttention(p, pool));
  });
  if (!times.empty()) sec = Median(times);  // without the probe passes
  std::printf("  attention batch=%-3lld ctx=%-5lld new=%-4lld (%lld heads, %lld kv, d=%lld, %s%s): %9.1f us",
              static_cast<long long>(batch), static_cast<long long>(ctx),
              static_cast<long long>(n_new), static_cast<long long>(heads),
              static_cast<long long>(kv_heads), static_cast<long long>(d),
              std::string(DTypeName(shape.kv)).c_str(), shape.bf16_dot ? " bf16dot" : "",
              sec * 1e6);
  if (n_new == 1) {
    std::sort(ratios.begin(), ratios.end());
    std::printf("  %6.1f GB/s K/V, %5.1f%% of the interleaved bandwidth (%.0f-%.0f%%)%s",
                kv_bytes / sec / 1e9, 100.0 * Median(ratios), 100.0 * ratios.front(),
                100.0 * ratios.back(), kv_bytes < 64.0 * (1 << 20) ? " in cache" : "");
  }
  std::printf("\n");
}

int Main() {
  const int threads = g_flags.threads;
  const int reps = std::max(1, g_flags.reps);
  const bool quick = g_flags.quick;
  auto pool_or = ThreadPool::Create({.num_threads = threads});
  Check(pool_or.status());
  ThreadPool* pool = pool_or->get();
  const CpuFeatures& f = GetCpuFeatures();
  std::printf("cpu: avx2=%d fma=%d f16c=%d avx512f=%d avx512bw=%d avx512vl=%d avx512bf16=%d "
              "avx512vnni=%d; best isa %s; %d threads\n",
              f.avx2, f.fma, f.f16c, f.avx512f, f.avx512bw, f.avx512vl, f.avx512bf16,
              f.avx512vnni, std::string(IsaName(BestIsa())).c_str(), threads);
  const double bw = PrintReadBandwidth(pool, reps);
  const size_t pool_bytes = static_cast<size_t>(g_flags.weight_pool_mib) << 20;

  const std::string only = g_flags.only;
  auto run = [&](const char* section) {
    return only.empty() || only.find(section) != std::string::npos;
  };
  if (run("gemv")) {
  std::printf("GEMV (batch-1 decode), weights rotating over %zu MiB:\n", pool_bytes >> 20);
  struct Shape {
    int64_t n, k;
  };
  const std::vector<Shape> gemv_shapes =
      quick ? std::vector<Shape>{{5632, 2048}} : std::vector<Shape>{{5632, 2048}, {2048, 5632}, {32000, 2048}};
  for (const Shape& s : gemv_shapes) {
    for (DType t : {DType::kBF16, DType::kI8, DType::kF16, DType::kF32}) {
      if (quick && t != DType::kBF16 && t != DType::kI8) continue;
      const WeightSet w = MakeWeights(s.n, s.k, t, pool_bytes);
      BenchGemm(pool, reps * 4, bw, 1, s.n, s.k, t, Isa::kAvx512, false, w);
      if (t == DType::kBF16) BenchGemm(pool, reps * 4, bw, 1, s.n, s.k, t, Isa::kAvx512, true, w);
      BenchGemm(pool, reps * 4, bw, 1, s.n, s.k, t, Isa::kAvx2, false, w);
      if (t == DType::kBF16) BenchGemm(pool, reps * 4, bw, 1, s.n, s.k, t, Isa::kAvx2, true, w);
      if (s.n == 5632 && t == DType::kBF16) {
        BenchGemm(pool, std::max(3, reps / 3), bw, 1, s.n, s.k, t, Isa::kScalar, false, w);
      }
    }
  }

  }
  if (run("gemm")) {
    std::printf("GEMM (batched decode and prefill), N=5632 K=2048:\n");
    const WeightSet wb = MakeWeights(5632, 2048, DType::kBF16, pool_bytes);
    const WeightSet wf = MakeWeights(5632, 2048, DType::kF32, 0);
    const WeightSet wi = MakeWeights(5632, 2048, DType::kI8, pool_bytes);
    for (int64_t m : {8, 32, 512}) {
      const int r = m == 512 ? std::max(3, reps / 3) : reps;
      BenchGemm(pool, r, bw, m, 5632, 2048, DType::kBF16, Isa::kAvx512, false, wb);
      BenchGemm(pool, r, bw, m, 5632, 2048, DType::kBF16, Isa::kAvx512, true, wb);
      BenchGemm(pool, r, bw, m, 5632, 2048, DType::kI8, Isa::kAvx512, false, wi);
      if (!quick) {
        BenchGemm(pool, r, bw, m, 5632, 2048, DType::kI8, Isa::kAvx2, false, wi);
        BenchGemm(pool, r, bw, m, 5632, 2048, DType::kF32, Isa::kAvx512, false, wf);
        BenchGemm(pool, r, bw, m, 5632, 2048, DType::kBF16, Isa::kAvx2, false, wb);
        BenchGemm(pool, r, bw, m, 5632, 2048, DType::kBF16, Isa::kAvx2, true, wb);
      }
    }
  }

  if (run("attention")) {
    std::printf("Paged attention:\n");
    auto probe = BandwidthProbe::Create(
        pool, {.bytes = uint64_t{256} << 20, .slice_bytes = uint64_t{32} << 20});
    Check(probe.status());
    BandwidthProbe* pr = probe->get();
    const AttentionShape bf16{.kv = DType::kBF16};
    const AttentionShape bf16_dot{.kv = DType::kBF16, .bf16_dot = true};
    const AttentionShape wide{.heads = 32, .kv_heads = 8, .d = 128, .kv = DType::kBF16};
    const AttentionShape wide_dot{.heads = 32, .kv_heads = 8, .d = 128, .kv = DType::kBF16,
                                  .bf16_dot = true};
    BenchAttention(pool, pr, reps, 1, 512, 1);
    BenchAttention(pool, pr, reps, 32, 512, 1);
    if (!quick) {
      BenchAttention(pool, pr, reps, 32, 2048, 1);
      BenchAttention(pool, pr, reps, 8, 2048, 1, {.heads = 32, .kv_heads = 8, .d = 128});
    }
    for (const AttentionShape& shape : {bf16, bf16_dot}) {
      BenchAttention(pool, pr, reps, 1, 2048, 1, shape);
      BenchAttention(pool, pr, reps, 32, 512, 1, shape);
      BenchAttention(pool, pr, reps, 32, 2048, 1, shape);
    }
    if (!quick) {
      BenchAttention(pool, pr, reps, 8, 2048, 1, wide);
      BenchAttention(pool, pr, reps, 8, 2048, 1, wide_dot);
      BenchAttention(pool, pr, std::max(3, reps / 3), 1, 512, 512);
      BenchAttention(pool, pr, std::max(3, reps / 3), 1, 512, 512, bf16);
      BenchAttention(pool, pr, std::max(3, reps / 3), 1, 512, 512, bf16_dot);
    }
  }
  return 0;
}

}  // namespace
}  // namespace kestrel::kernels::cpu

int main(int argc, char** argv) {
  using kestrel::kernels::cpu::g_flags;
  kestrel::FlagSet flags("kernels_bench", "",
                         "CPU kernel microbenchmark: read bandwidth, GEMV, GEMM and paged "
                         "attention (docs/kernels.md).");
  kestrel::kernels::cpu::DeclareFlags(flags, g_flags);
  const kestrel::ParsedArgs args = flags.ParseOrExit(argc, argv);
  if (!args.positional.empty()) {
    return flags.UsageError("unexpected argument '" + args.positional[0] + "' (see --help)");
  }
  if (g_flags.threads < 1) {
    return flags.UsageError("--threads: must be >= 1, got " + std::to_string(g_flags.threads));
  }
  if (g_flags.bandwidth_mib < 1 || g_flags.weight_pool_mib < 1) {
    return flags.UsageError(g_flags.bandwidth_mib < 1 ? "--bandwidth-mib: must be >= 1"
                                                      : "--weight-pool-mib: must be >= 1");
  }
  return kestrel::kernels::cpu::Main();
}
