// Read-bandwidth probe (see bandwidth.h).
#include "kernels/cpu/bandwidth.h"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/isa_dispatch.h"

namespace kestrel::kernels::cpu {
namespace {

constexpr uint64_t kPage = 4096;
constexpr int64_t kFloatsPerPage = kPage / sizeof(float);

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

absl::StatusOr<std::unique_ptr<BandwidthProbe>> BandwidthProbe::Create(
    ThreadPool* pool, const BandwidthOptions& options) {
  const uint64_t bytes = options.bytes / kPage * kPage;
  if (bytes == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("BandwidthProbe: bytes must be >= 4096, got ", options.bytes));
  }
  const Isa isa = ResolveIsa(options.isa);
  if (!IsaSupported(isa)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "BandwidthProbe: isa ", std::string(IsaName(isa)), " is not supported by this CPU"));
  }
  const uint64_t slice =
      options.slice_bytes == 0
          ? bytes
          : std::clamp<uint64_t>(options.slice_bytes / kPage * kPage, kPage, bytes);
  void* mem = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    return absl::ResourceExhaustedError(absl::StrCat("BandwidthProbe: mmap of ", bytes,
                                                     " bytes failed: ", std::strerror(errno)));
  }
  ::madvise(mem, bytes, MADV_HUGEPAGE);
  float* data = static_cast<float*>(mem);
  std::fill(data, data + bytes / sizeof(float), 1.0f);
  std::unique_ptr<BandwidthProbe> probe(new BandwidthProbe(pool, data, bytes, slice, isa));
  probe->Measure(1);  // warm-up: page tables, TLB, the pool's threads
  return probe;
}

BandwidthProbe::BandwidthProbe(ThreadPool* pool, float* data, uint64_t bytes, uint64_t slice,
                               Isa isa)
    : pool_(pool), data_(data), bytes_(bytes), slice_(slice), isa_(isa) {}

BandwidthProbe::~BandwidthProbe() { ::munmap(data_, bytes_); }

BandwidthResult BandwidthProbe::Measure(int passes) {
  const auto sum_f32 = GetIsaTable(isa_).sum_f32;
  std::atomic<double> checksum{0};
  std::vector<double> gbs;
  for (int pass = 0; pass < passes; ++pass) {
    for (uint64_t s0 = 0; s0 < bytes_; s0 += slice_) {
      const float* base = data_ + s0 / sizeof(float);
      const int64_t pages = static_cast<int64_t>(std::min(slice_, bytes_ - s0) / kPage);
      const auto t0 = std::chrono::steady_clock::now();
      // Grain of 16 pages (64 KiB): each chunk is a long contiguous stream.
      ParallelFor(pool_, pages, 16, [&](int64_t begin, int64_t end) {
        checksum.fetch_add(sum_f32(base + begin * kFloatsPerPage, (end - begin) * kFloatsPerPage),
                           std::memory_order_relaxed);
      });
      const double sec =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      gbs.push_back(static_cast<double>(pages * kPage) / sec / 1e9);
    }
  }
  BandwidthResult r;
  if (gbs.empty()) return r;
  r.median_gbs = Median(gbs);
  r.min_gbs = *std::min_element(gbs.begin(), gbs.end());
  r.max_gbs = *std::max_element(gbs.begin(), gbs.end());
  r.samples = static_cast<int>(gbs.size());
  r.isa = isa_;
  r.checksum = checksum.load();
  return r;
}

absl::StatusOr<BandwidthResult> MeasureReadBandwidth(ThreadPool* pool,
                                                     const BandwidthOptions& options,
                                                     int passes) {
  if (passes < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("MeasureReadBandwidth: passes must be >= 1, got ", passes));
  }
  auto probe = BandwidthProbe::Create(pool, options);
  if (!probe.ok()) return probe.status();
  return (*probe)->Measure(passes);
}

}  // namespace kestrel::kernels::cpu
