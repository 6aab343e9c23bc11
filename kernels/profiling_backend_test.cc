// The profiling decorator: every Ops method reaches the wrapped backend with
// its arguments (a fake backend records each call), is counted and timed
// under its own name only while enabled, is bracketed by device syncs, and
// returns the wrapped op's status; on the real CPU backend a GEMM gives the
// same bits through the wrapper as without it.
#include "kernels/profiling_backend.h"

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/cpu_backend.h"

namespace kestrel::kernels {
namespace {

// What the fake saw, shared with the test after the backend moved into the
// wrapper.
struct Log {
  std::vector<OpKind> calls;
  int syncs = 0;
  int64_t last_m = 0;  // GemmParams::m of the last Gemm
  // The op that fails (with its name) instead of succeeding; -1: none.
  int fail = -1;
  bool fail_sync = false;
};

class FakeDevice final : public Device {
 public:
  explicit FakeDevice(Log* log) : log_(log) {}
  std::string name() const override { return "fake"; }
  bool host_memory() const override { return true; }
  absl::Status CopyToDevice(void*, const void*, size_t) override { return absl::OkStatus(); }
  absl::Status CopyOnDevice(void*, const void*, size_t) override { return absl::OkStatus(); }
  absl::Status CopyToHost(void*, const void*, size_t) override { return absl::OkStatus(); }
  absl::Status Memset(void*, uint8_t, size_t) override { return absl::OkStatus(); }
  absl::Status Synchronize() override {
    ++log_->syncs;
    return log_->fail_sync ? absl::InternalError("sync failed") : absl::OkStatus();
  }
  absl::StatusOr<MemoryInfo> GetMemoryInfo() const override { return MemoryInfo{}; }

 protected:
  absl::StatusOr<void*> AllocateRaw(size_t) override {
    return absl::UnimplementedError("fake device");
  }
  void FreeRaw(void*, size_t) override {}

 private:
  Log* log_;  // not owned
};

class FakeOps final : public Ops {
 public:
  explicit FakeOps(Log* log) : log_(log) {}
  absl::Status Gemm(const GemmParams& p) override {
    log_->last_m = p.m;
    return Record(OpKind::kGemm);
  }
  absl::Status RmsNorm(const float*, int64_t, float*, int64_t, const float*, int64_t, int64_t,
                       float) override {
    return Record(OpKind::kRmsNorm);
  }
  absl::Status RmsNormPerHead(float*, int64_t, int64_t, int64_t, int64_t, const float*,
                              float) override {
    return Record(OpKind::kRmsNormPerHead);
  }
  absl::Status ApplyRope(float*, int64_t, int64_t, float*, int64_t, int64_t, const int32_t*,
                         int64_t, int64_t, const float*, const float*, int64_t) override {
    return Record(OpKind::kApplyRope);
  }
  absl::Status SiluAndMul(const float*, int64_t, const float*, int64_t, float*, int64_t, int64_t,
                          int64_t) override {
    return Record(OpKind::kSiluAndMul);
  }
  absl::Status EmbeddingGather(const void*, DType, int64_t, int64_t, const int32_t*, int64_t,
                               float*, int64_t) override {
    return Record(OpKind::kEmbeddingGather);
  }
  absl::Status WriteKvCache(const float*, int64_t, const float*, int64_t, const int32_t*, int64_t,
                            int64_t, int64_t, void*, void*, int64_t, int64_t, DType) override {
    return Record(OpKind::kWriteKvCache);
  }
  absl::Status PagedAttention(const PagedAttentionParams&) override {
    return Record(OpKind::kPagedAttention);
  }
  absl::Status GatherRows(const float*, int64_t, const int32_t*, int64_t, int64_t, float*,
                          int64_t) override {
    return Record(OpKind::kGatherRows);
  }
  absl::Status CopyBlocks(void*, int64_t, int64_t, int64_t, int64_t, const int32_t*,
                          int64_t) override {
    return Record(OpKind::kCopyBlocks);
  }
  absl::Status Sample(const SampleParams&) override { return Record(OpKind::kSample); }

 private:
  absl::Status Record(OpKind kind) {
    log_->calls.push_back(kind);
    if (log_->fail == static_cast<int>(kind)) {
      return absl::InvalidArgumentError(std::string(OpKindName(kind)));
    }
    return absl::OkStatus();
  }
  Log* log_;  // not owned
};

class FakeBackend final : public Backend {
 public:
  explicit FakeBackend(Log* log) : device_(log), ops_(log) {}
  Device& device() override { return device_; }
  Ops& ops() override { return ops_; }
  std::string Describe() const override { return "fake backend"; }

 private:
  FakeDevice device_;
  FakeOps ops_;
};

// Calls every Ops method once, in OpKind order, with null arguments (the
// fake reads none of them); the statuses in OpKind order.
std::vector<absl::Status> CallEveryOp(Ops& ops) {
  std::vector<absl::Status> s;
  s.push_back(ops.Gemm({.m = 3}));
  s.push_back(ops.RmsNorm(nullptr, 0, nullptr, 0, nullptr, 0, 0, 0.0f));
  s.push_back(ops.RmsNormPerHead(nullptr, 0, 0, 0, 0, nullptr, 0.0f));
  s.push_back(ops.ApplyRope(nullptr, 0, 0, nullptr, 0, 0, nullptr, 0, 0, nullptr, nullptr, 0));
  s.push_back(ops.SiluAndMul(nullptr, 0, nullptr, 0, nullptr, 0, 0, 0));
  s.push_back(ops.EmbeddingGather(nullptr, DType::kF32, 0, 0, nullptr, 0, nullptr, 0));
  s.push_back(ops.WriteKvCache(nullptr, 0, nullptr, 0, nullptr, 0, 0, 0, nullptr, nullptr, 0, 0,
                               DType::kF32));
  s.push_back(ops.PagedAttention({}));
  s.push_back(ops.GatherRows(nullptr, 0, nullptr, 0, 0, nullptr, 0));
  s.push_back(ops.CopyBlocks(nullptr, 0, 0, 0, 0, nullptr, 0));
  s.push_back(ops.Sample({}));
  return s;
}

std::vector<OpKind> AllKinds() {
  std::vector<OpKind> kinds;
  for (int k = 0; k < kNumOpKinds; ++k) kinds.push_back(static_cast<OpKind>(k));
  return kinds;
}

TEST_CASE("Every op is forwarded, and counted under its own name while enabled", "[profiling]") {
  Log log;
  ProfilingBackend p(std::make_unique<FakeBackend>(&log));
  CHECK(p.Describe() == "fake backend (op profiling)");
  CHECK(p.device().name() == "fake");

  // Disabled (the default): forwarded, not counted, no syncs.
  CHECK_FALSE(p.enabled());
  for (const absl::Status& s : CallEveryOp(p.ops())) CHECK(s.ok());
  CHECK(log.calls == AllKinds());
  CHECK(log.last_m == 3);
  CHECK(log.syncs == 0);
  CHECK(p.profile().total_calls() == 0);

  // Enabled: counted per op, two syncs around each.
  log.calls.clear();
  p.set_enabled(true);
  for (const absl::Status& s : CallEveryOp(p.ops())) CHECK(s.ok());
  CHECK(p.ops().Gemm({.m = 5}).ok());
  CHECK(log.last_m == 5);
  CHECK(log.syncs == 2 * (kNumOpKinds + 1));
  const OpProfile& prof = p.profile();
  for (OpKind k : AllKinds()) {
    INFO(OpKindName(k));
    CHECK(prof[k].calls == (k == OpKind::kGemm ? 2 : 1));
    CHECK(prof[k].seconds >= 0);
  }
  CHECK(prof.total_calls() == kNumOpKinds + 1);
  CHECK(prof.total_seconds() >= prof[OpKind::kGemm].seconds);

  // Disabled again: the totals stay; Reset zeroes them.
  p.set_enabled(false);
  CHECK(p.ops().Gemm({}).ok());
  CHECK(p.profile()[OpKind::kGemm].calls == 2);
  p.Reset();
  CHECK(p.profile().total_calls() == 0);
  CHECK(p.profile().total_seconds() == 0);
}

TEST_CASE("An op's error comes back unchanged and the call still counts", "[profiling]") {
  Log log;
  ProfilingBackend p(std::make_unique<FakeBackend>(&log));
  for (bool enabled : {false, true}) {
    p.set_enabled(enabled);
    p.Reset();
    log.fail = static_cast<int>(OpKind::kPagedAttention);
    const std::vector<absl::Status> s = CallEveryOp(p.ops());
    for (OpKind k : AllKinds()) {
      INFO(OpKindName(k) << (enabled ? " enabled" : " disabled"));
      if (k == OpKind::kPagedAttention) {
        CHECK(s[static_cast<size_t>(k)].code() == absl::StatusCode::kInvalidArgument);
        CHECK(s[static_cast<size_t>(k)].message() == "PagedAttention");
      } else {
        CHECK(s[static_cast<size_t>(k)].ok());
      }
    }
    CHECK(p.profile()[OpKind::kPagedAttention].calls == (enabled ? 1 : 0));
  }
}

TEST_CASE("A failing device sync fails the profiled op", "[profiling]") {
  Log log;
  ProfilingBackend p(std::make_unique<FakeBackend>(&log));
  log.fail_sync = true;
  CHECK(p.ops().Sample({}).ok());  // disabled: no sync
  p.set_enabled(true);
  const absl::Status s = p.ops().Sample({});
  CHECK(s.code() == absl::StatusCode::kInternal);
  CHECK(s.message() == "sync failed");
}

TEST_CASE("The CPU backend computes the same GEMM through the wrapper", "[profiling]") {
  auto cpu = cpu::CreateCpuBackend({.num_threads = 2});
  REQUIRE(cpu.ok());
  auto direct = cpu::CreateCpuBackend({.num_threads = 2});
  REQUIRE(direct.ok());
  ProfilingBackend p(std::move(*cpu));
  p.set_enabled(true);
  // Awkward sizes: M = 7, N = 19, K = 99.
  const int64_t m = 7, n = 19, k = 99;
  std::vector<float> x(static_cast<size_t>(m * k)), w(static_cast<size_t>(n * k));
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 13) * 0.25f - 1.5f;
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i % 7) * 0.5f - 1.0f;
  std::vector<float> y1(static_cast<size_t>(m * n), -1.0f), y2 = y1;
  GemmParams g{.x = x.data(), .ldx = k, .w = w.data(), .w_dtype = DType::kF32, .ldw = k,
               .y = y1.data(), .ldy = n, .m = m, .n = n, .k = k};
  REQUIRE(p.ops().Gemm(g).ok());
  g.y = y2.data();
  REQUIRE((*direct)->ops().Gemm(g).ok());
  CHECK(y1 == y2);
  CHECK(y1[0] != -1.0f);
  CHECK(p.profile()[OpKind::kGemm].calls == 1);
  CHECK(p.profile()[OpKind::kGemm].seconds > 0);
  CHECK(p.profile().total_calls() == 1);
  // A bad id is the CPU op's error, through the wrapper.
  const int32_t bad = 5;
  float out[4];
  const absl::Status s =
      p.ops().EmbeddingGather(w.data(), DType::kF32, 2, 4, &bad, 1, out, 4);
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK(p.profile()[OpKind::kEmbeddingGather].calls == 1);
}

}  // namespace
}  // namespace kestrel::kernels
