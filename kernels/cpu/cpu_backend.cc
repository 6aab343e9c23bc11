// The CPU backend of kernels/backend.h: host memory as device memory and a
// thin forwarder from each op to the CPU kernel of its family.
#include "kernels/cpu/cpu_backend.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/cpu/activation.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/kv_cache.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/sampling.h"
#include "kernels/cpu/thread_pool.h"

namespace kestrel::kernels::cpu {
namespace {

// Allocations from this size on are anonymous mappings: zero-filled on first
// touch, so an unused budget (the KV pool's tail) costs no resident memory,
// and backed by huge pages where the kernel allows (fewer TLB misses in
// attention and GEMM).
constexpr size_t kMapThreshold = size_t{2} << 20;

class CpuDevice final : public Device {
 public:
  std::string name() const override { return "cpu"; }
  bool host_memory() const override { return true; }

  absl::Status CopyToDevice(void* dst, const void* src, size_t bytes) override {
    if (bytes > 0) std::memcpy(dst, src, bytes);
    return absl::OkStatus();
  }
  absl::Status CopyOnDevice(void* dst, const void* src, size_t bytes) override {
    if (bytes > 0) std::memcpy(dst, src, bytes);
    return absl::OkStatus();
  }
  absl::Status CopyToHost(void* dst, const void* src, size_t bytes) override {
    if (bytes > 0) std::memcpy(dst, src, bytes);
    return absl::OkStatus();
  }
  absl::Status Memset(void* dst, uint8_t value, size_t bytes) override {
    if (bytes > 0) std::memset(dst, value, bytes);
    return absl::OkStatus();
  }
  // Every op has finished when it returns.
  absl::Status Synchronize() override { return absl::OkStatus(); }

  // Host memory: MemAvailable and MemTotal of /proc/meminfo.
  absl::StatusOr<MemoryInfo> GetMemoryInfo() const override {
    std::ifstream meminfo("/proc/meminfo");
    std::string key;
    uint64_t kib = 0;
    std::string unit;
    MemoryInfo info;
    while (meminfo >> key >> kib >> unit) {
      if (key == "MemAvailable:") info.free_bytes = kib << 10;
      if (key == "MemTotal:") info.total_bytes = kib << 10;
    }
    if (info.free_bytes == 0 || info.total_bytes == 0) {
      return absl::UnavailableError("cpu: /proc/meminfo has no MemAvailable or MemTotal");
    }
    return info;
  }

 protected:
  absl::StatusOr<void*> AllocateRaw(size_t bytes) override {
    if (bytes >= kMapThreshold) {
      void* addr = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (addr == MAP_FAILED) return absl::ResourceExhaustedError(std::strerror(errno));
      (void)::madvise(addr, bytes, MADV_HUGEPAGE);
      return addr;
    }
    void* addr = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (addr == nullptr) return absl::ResourceExhaustedError("out of memory");
    return addr;
  }
  void FreeRaw(void* data, size_t bytes) override {
    if (bytes >= kMapThreshold) {
      ::munmap(data, bytes);
    } else {
      std::free(data);
    }
  }
};

class CpuOps final : public Ops {
 public:
  CpuOps(ThreadPool* pool, Isa gemm_isa) : pool_(pool), gemm_isa_(gemm_isa) {}

  absl::Status Gemm(const GemmParams& p) override { return cpu::Gemm(p, pool_, gemm_isa_); }
  absl::Status RmsNorm(const float* x, int64_t x_stride, float* out, int64_t out_stride,
                       const float* weight, int64_t rows, int64_t dim, float eps) override {
    return cpu::RmsNorm(x, x_stride, out, out_stride, weight, rows, dim, eps);
  }
  absl::Status RmsNormPerHead(float* x, int64_t x_stride, int64_t num_tokens, int64_t num_heads,
                              int64_t head_dim, const float* weight, float eps) override {
    return cpu::RmsNormPerHead(x, x_stride, num_tokens, num_heads, head_dim, weight, eps);
  }
  absl::Status ApplyRope(float* q, int64_t q_stride, int64_t num_q_heads, float* k,
                         int64_t k_stride, int64_t num_kv_heads, const int32_t* positions,
                         int64_t num_tokens, int64_t head_dim, const float* cos_table,
                         const float* sin_table, int64_t max_positions) override {
    return cpu::ApplyRope(q, q_stride, num_q_heads, k, k_stride, num_kv_heads, positions,
                          num_tokens, head_dim, cos_table, sin_table, max_positions);
  }
  absl::Status SiluAndMul(const float* gate, int64_t gate_stride, const float* up,
                          int64_t up_stride, float* out, int64_t out_stride, int64_t rows,
                          int64_t dim) override {
    return cpu::SiluAndMul(gate, gate_stride, up, up_stride, out, out_stride, rows, dim, pool_);
  }
  absl::Status EmbeddingGather(const void* table, DType table_dtype, int64_t vocab_size,
                               int64_t dim, const int32_t* ids, int64_t num_tokens, float* out,
                               int64_t out_stride) override {
    return cpu::EmbeddingGather(table, table_dtype, vocab_size, dim, ids, num_tokens, out,
                                out_stride);
  }
  absl::Status WriteKvCache(const float* k, int64_t k_stride, const float* v, int64_t v_stride,
                            const int32_t* slot_mapping, int64_t num_tokens,
                            int64_t num_kv_heads, int64_t head_dim, void* k_cache,
                            void* v_cache, int64_t num_blocks, int64_t block_size,
                            DType cache_dtype) override {
    return cpu::WriteKvCache(k, k_stride, v, v_stride, slot_mapping, num_tokens, num_kv_heads,
                             head_dim, k_cache, v_cache, num_blocks, block_size, cache_dtype);
  }
  absl::Status PagedAttention(const PagedAttentionParams& p) override {
    return cpu::PagedAttention(p, pool_);
  }
  absl::Status GatherRows(const float* src, int64_t src_stride, const int32_t* rows,
                          int64_t num_rows, int64_t dim, float* dst,
                          int64_t dst_stride) override {
    return cpu::GatherRows(src, src_stride, rows, num_rows, dim, dst, dst_stride);
  }
  absl::Status CopyBlocks(void* base, int64_t num_arrays, int64_t array_stride,
                          int64_t block_bytes, int64_t num_blocks, const int32_t* pairs,
                          int64_t num_pairs) override {
    return cpu::CopyBlocks(base, num_arrays, array_stride, block_bytes, num_blocks, pairs,
                           num_pairs);
  }
  absl::Status Sample(const SampleParams& p) override { return cpu::Sample(p, pool_); }

 private:
  ThreadPool* const pool_;  // not owned
  const Isa gemm_isa_;
};

class CpuBackend final : public Backend {
 public:
  CpuBackend(std::unique_ptr<ThreadPool> pool, Isa isa)
      : pool_(std::move(pool)), isa_(isa), ops_(pool_.get(), isa) {}

  Device& device() override { return device_; }
  Ops& ops() override { return ops_; }
  std::string Describe() const override {
    return absl::StrCat("cpu (", std::string(IsaName(ResolveIsa(isa_))), ", ",
                        pool_->num_threads(), pool_->num_threads() == 1 ? " thread)" : " threads)");
  }

 private:
  const std::unique_ptr<ThreadPool> pool_;
  const Isa isa_;
  CpuDevice device_;
  CpuOps ops_;  // uses pool_
};

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> CreateCpuBackend(const CpuBackendOptions& options) {
  if (options.num_threads < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cpu backend: threads must be >= 0, got ", options.num_threads));
  }
  if (!IsaSupported(options.gemm_isa)) {
    return absl::InvalidArgumentError(absl::StrCat("cpu backend: this CPU cannot run ",
                                                   std::string(IsaName(options.gemm_isa))));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<ThreadPool> pool,
                   ThreadPool::Create({.num_threads = options.num_threads}));
  return std::unique_ptr<Backend>(new CpuBackend(std::move(pool), options.gemm_isa));
}

}  // namespace kestrel::kernels::cpu
