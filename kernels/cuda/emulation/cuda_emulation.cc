// The CPU emulation of the CUDA execution model: launches, blocks, fibers,
// barriers and warp operations (see cuda_emulation.h for the contract).
//
// A launch takes the launch lock, then runs the blocks one after another on
// the calling host thread. Each CUDA thread of a block is a Fiber (fiber.h)
// from a per-host-thread pool, reused across blocks and launches. The host
// context is the scheduler: it makes passes over the fibers in the run
// order, switching to each runnable one, which runs until it blocks (a
// barrier or warp operation) or leaves the kernel. When a pass ends every
// fiber is blocked or gone, and the scheduler resolves: a warp operation
// whose mask's lanes are all at a warp operation with the same mask and kind
// completes (results computed from the lanes' slots); with no warp operation
// left, a block barrier completes if every thread of the block is at the same
// __syncthreads. Anything else is a divergence: the launch fails with a
// message naming file:line, and the blocked fibers are resumed with a cancel
// flag so they unwind (an exception caught at the fiber's base) instead of
// hanging.
//
// Static __shared__ variables are static storage (blocks never overlap). The
// emulated build's copy of each .cu (bazel/cuda.bzl) registers every
// single-variable `__shared__ T name[...];` line at its first execution
// (RegisterStaticShared), which fills it with 0xff bytes; the scheduler
// refills every registered range before each block. Declarations in headers
// or with several declarators are not registered and keep their values.
//
// ThreadSanitizer: fibers are TSan fibers switched without synchronisation;
// the only orderings the emulation creates are the ones CUDA promises: the
// launch before every thread (start_sync), a __syncthreads passage (each
// thread releases, then after the barrier acquires, one of two alternating
// objects), a warp operation (each lane releases its own object and acquires
// those of its group), and every thread before the launch's return
// (end_sync). The scheduler's own bookkeeping runs with TSan's reads and
// writes ignored, so it links no emulated threads.
#include "kernels/cuda/emulation/cuda_emulation.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <random>
#include <unordered_map>
#include <vector>

#include "kernels/cuda/emulation/fiber.h"

#if defined(KESTREL_FIBER_TSAN)
#include <sanitizer/tsan_interface.h>
extern "C" void AnnotateIgnoreReadsBegin(const char* file, int line);
extern "C" void AnnotateIgnoreReadsEnd(const char* file, int line);
extern "C" void AnnotateIgnoreWritesBegin(const char* file, int line);
extern "C" void AnnotateIgnoreWritesEnd(const char* file, int line);
#endif

// The emulator's code that runs on fibers: its own memory accesses are
// invisible to TSan (they would link emulated threads, or race with the
// teardown of the structures they read after their last release).
#if defined(KESTREL_FIBER_TSAN)
#define KESTREL_EMULATOR_CODE __attribute__((no_sanitize_thread, noinline))
#else
#define KESTREL_EMULATOR_CODE
#endif

namespace kestrel::cuda::emulation {

thread_local const ThreadState* t_thread = nullptr;

namespace {

constexpr int kWarpSize = 32;
constexpr unsigned kMaxBlockThreads = 1024;
constexpr size_t kDefaultSharedBytes = 48 * 1024;
constexpr int kOptinSharedBytes = 227 * 1024;

#if defined(KESTREL_FIBER_ASAN)
constexpr size_t kDefaultStackBytes = 256 * 1024;
#elif defined(KESTREL_FIBER_TSAN)
constexpr size_t kDefaultStackBytes = 128 * 1024;
#else
constexpr size_t kDefaultStackBytes = 64 * 1024;
#endif

void TsanRelease([[maybe_unused]] void* address) {
#if defined(KESTREL_FIBER_TSAN)
  __tsan_release(address);
#endif
}
void TsanAcquire([[maybe_unused]] void* address) {
#if defined(KESTREL_FIBER_TSAN)
  __tsan_acquire(address);
#endif
}

// Hides the emulator's own memory accesses from TSan for its lifetime.
class TsanIgnore {
 public:
#if defined(KESTREL_FIBER_TSAN)
  TsanIgnore() {
    AnnotateIgnoreReadsBegin(__FILE__, __LINE__);
    AnnotateIgnoreWritesBegin(__FILE__, __LINE__);
  }
  ~TsanIgnore() {
    AnnotateIgnoreWritesEnd(__FILE__, __LINE__);
    AnnotateIgnoreReadsEnd(__FILE__, __LINE__);
  }
#else
  TsanIgnore() {}  // user-provided: a scope guard is not an unused variable
#endif
  TsanIgnore(const TsanIgnore&) = delete;
  TsanIgnore& operator=(const TsanIgnore&) = delete;
};

// Thrown inside a blocked fiber to unwind it after the launch failed.
struct Cancelled {};

struct Site {
  const char* file = nullptr;
  int line = 0;
  bool operator==(const Site& o) const {
    return line == o.line && (file == o.file || std::strcmp(file, o.file) == 0);
  }
  std::string Describe() const { return std::string(file) + ":" + std::to_string(line); }
};

enum class State : uint8_t { kRunnable, kAtBarrier, kAtWarpOp, kExited };

std::string Hex(unsigned v) {
  char s[16];
  std::snprintf(s, sizeof s, "0x%08x", v);
  return s;
}

const char* OpName(WarpOp op, ShuffleMode mode) {
  switch (op) {
    case WarpOp::kSync: return "__syncwarp";
    case WarpOp::kVote: return "__ballot_sync/__any_sync/__all_sync";
    case WarpOp::kShuffle:
      switch (mode) {
        case ShuffleMode::kIndex: return "__shfl_sync";
        case ShuffleMode::kUp: return "__shfl_up_sync";
        case ShuffleMode::kDown: return "__shfl_down_sync";
        case ShuffleMode::kXor: return "__shfl_xor_sync";
        case ShuffleMode::kNone: break;
      }
  }
  return "warp operation";
}

struct EmulatedThread {
  ThreadState state_regs;  // what threadIdx & co. read
  std::unique_ptr<Fiber> fiber;
  int tid = 0;
  State state = State::kExited;
  bool cancel = false;
  Site site;
  // The pending warp operation.
  WarpOp op = WarpOp::kSync;
  ShuffleMode mode = ShuffleMode::kNone;
  unsigned mask = 0;
  uint64_t slot = 0;
  int lane_arg = 0;
  int width = kWarpSize;
  uint64_t result = 0;
  // TSan synchronisation (see the file comment).
  unsigned barriers_passed = 0;
  unsigned warp_ops_passed = 0;
  unsigned group_mask = 0;
  unsigned group_parity = 0;       // bit l: which warp_sync lane l released
  unsigned group_sync_parity = 0;  // which group_sync of the group's lowest lane
  char warp_sync[2] = {};
  // Owned by the lowest lane of a group (see WarpExchange).
  unsigned groups_owned = 0;
  bool group_open = false;
  char group_sync[2] = {};
};

// What the fibers of the running block share. One per host thread.
struct BlockRun {
  void (*body)(void*) = nullptr;
  void* context = nullptr;
  unsigned char* dynamic_smem = nullptr;
  int threads = 0;
  dim3 block_idx;
  bool failed = false;
  std::string error;
  std::vector<std::unique_ptr<EmulatedThread>> pool;
  char start_sync = 0, end_sync = 0;
  char barrier_sync[2] = {};

  void Fail(const std::string& message) {
    TsanIgnore ignore;
    if (!failed) {
      failed = true;
      error = "in block (" + std::to_string(block_idx.x) + "," + std::to_string(block_idx.y) +
              "," + std::to_string(block_idx.z) + ") of " + std::to_string(threads) +
              " threads: " + message;
    }
  }
};

thread_local BlockRun t_run;
thread_local EmulatedThread* t_current = nullptr;
thread_local std::string t_last_launch_error;

std::mutex& LaunchMutex() {
  static std::mutex mu;
  return mu;
}

// Guarded by LaunchMutex().
struct SharedState {
  std::vector<std::pair<unsigned char*, size_t>> static_shared;
  std::unordered_map<const void*, int> max_dynamic_smem;
  std::mt19937_64 rng{1};
  RunOrder order = RunOrder::kForward;
  bool configured = false;
  size_t stack_bytes = kDefaultStackBytes;
};
SharedState& Shared() {
  static SharedState* s = new SharedState;
  return *s;
}

void Configure(SharedState& s) {
  if (s.configured) return;
  s.configured = true;
  if (const char* order = std::getenv("KESTREL_CUDA_EMULATION_ORDER")) {
    const std::string o = order;
    if (o == "reverse") {
      s.order = RunOrder::kReverse;
    } else if (o == "random") {
      s.order = RunOrder::kRandom;
    } else if (o != "forward" && !o.empty()) {
      std::fprintf(stderr, "cuda emulation: KESTREL_CUDA_EMULATION_ORDER=%s is not forward, "
                   "reverse or random; using forward\n", order);
    }
  }
  if (const char* seed = std::getenv("KESTREL_CUDA_EMULATION_SEED")) {
    s.rng.seed(std::strtoull(seed, nullptr, 0));
  }
  if (const char* stack = std::getenv("KESTREL_CUDA_EMULATION_STACK_BYTES")) {
    s.stack_bytes = std::max<size_t>(16 * 1024, std::strtoull(stack, nullptr, 0));
  }
}

KESTREL_EMULATOR_CODE EmulatedThread& Self() {
  if (t_current == nullptr) OutsideKernel();
  return *t_current;
}

KESTREL_EMULATOR_CODE void FiberMain(void* arg) {
  auto* self = static_cast<EmulatedThread*>(arg);
  // Read once, before the first release: after its last release a fiber
  // reads nothing TSan sees, since the host may free it all.
  Fiber* const fiber = self->fiber.get();
  for (;;) {
    BlockRun& run = t_run;
    TsanAcquire(&run.start_sync);
    try {
      run.body(run.context);
    } catch (const Cancelled&) {
    } catch (...) {
      run.Fail("thread " + std::to_string(self->tid) + " threw an exception out of the kernel");
    }
    self->state = State::kExited;
    TsanRelease(&run.end_sync);
    fiber->SwitchToHost();
  }
}

// Parks the running fiber until the scheduler resumes it.
KESTREL_EMULATOR_CODE void Block(EmulatedThread& self) {
  self.fiber->SwitchToHost();
  if (self.cancel) throw Cancelled{};
}

std::string ThreadName(const EmulatedThread& t) {
  const uint3 i = t.state_regs.thread_idx;
  return "thread " + std::to_string(t.tid) + " (" + std::to_string(i.x) + "," +
         std::to_string(i.y) + "," + std::to_string(i.z) + ")";
}

std::string WhereIs(const EmulatedThread& t) {
  switch (t.state) {
    case State::kExited: return "has left the kernel";
    case State::kAtBarrier: return "waits at __syncthreads " + t.site.Describe();
    case State::kAtWarpOp:
      return "is at " + std::string(OpName(t.op, t.mode)) + " " + t.site.Describe() +
             " with mask " + Hex(t.mask);
    case State::kRunnable: return "is running";
  }
  return "?";
}

// The source lane a shuffle reads for `lane`, or -1 for its own value.
int ShuffleSource(const EmulatedThread& t, int lane) {
  const int width = t.width;
  const int segment = lane & ~(width - 1);
  const int index = lane & (width - 1);
  switch (t.mode) {
    case ShuffleMode::kIndex: return segment + (t.lane_arg & (width - 1));
    case ShuffleMode::kUp: return index >= t.lane_arg ? lane - t.lane_arg : lane;
    case ShuffleMode::kDown: return index + t.lane_arg < width ? lane + t.lane_arg : lane;
    case ShuffleMode::kXor: {
      const int source = lane ^ t.lane_arg;
      return source >= segment + width || source < 0 || source >= kWarpSize ? lane : source;
    }
    case ShuffleMode::kNone: break;
  }
  return lane;
}

// Completes the warp operations whose groups are complete. Returns whether
// any completed; fails the launch on a group that can never complete.
bool ResolveWarps(BlockRun& run) {
  bool released = false;
  for (int base = 0; base < run.threads && !run.failed; base += kWarpSize) {
    const int lanes = std::min(kWarpSize, run.threads - base);
    const unsigned present = lanes == kWarpSize ? ~0u : (1u << lanes) - 1;
    unsigned handled = 0;
    for (int lane = 0; lane < lanes && !run.failed; ++lane) {
      EmulatedThread& t = *run.pool[static_cast<size_t>(base + lane)];
      if (t.state != State::kAtWarpOp || (handled >> lane & 1u)) continue;
      const unsigned mask = t.mask;
      const std::string what = std::string(OpName(t.op, t.mode)) + " at " + t.site.Describe() +
                               " with mask " + Hex(mask) + " (" + ThreadName(t) + ")";
      if (!(mask >> lane & 1u)) {
        run.Fail(what + ": the mask does not name the calling lane " + std::to_string(lane));
        break;
      }
      if (mask & ~present) {
        run.Fail(what + ": the mask names lanes absent from this warp of " +
                 std::to_string(lanes) + " lanes");
        break;
      }
      // A lane released earlier in this resolution is on its way: wait.
      bool complete = true;
      for (unsigned m = mask; m != 0 && !run.failed; m &= m - 1) {
        const int other = std::countr_zero(m);
        const EmulatedThread& u = *run.pool[static_cast<size_t>(base + other)];
        if (u.state == State::kRunnable) {
          complete = false;
        } else if (u.state != State::kAtWarpOp || u.mask != mask || u.op != t.op) {
          run.Fail(what + ": lane " + std::to_string(other) + " " + WhereIs(u));
        }
      }
      if (run.failed) break;
      if (!complete) continue;
      EmulatedThread& owner = *run.pool[static_cast<size_t>(base + std::countr_zero(mask))];
      const unsigned group_sync_parity = owner.groups_owned++ & 1u;
      owner.group_open = true;
      unsigned ballot = 0, parity = 0;
      for (unsigned m = mask; m != 0; m &= m - 1) {
        const int other = std::countr_zero(m);
        const EmulatedThread& u = *run.pool[static_cast<size_t>(base + other)];
        if (u.slot != 0) ballot |= 1u << other;
        parity |= (u.warp_ops_passed & 1u) << other;
      }
      for (unsigned m = mask; m != 0; m &= m - 1) {
        const int other = std::countr_zero(m);
        EmulatedThread& u = *run.pool[static_cast<size_t>(base + other)];
        if (u.op == WarpOp::kVote) {
          u.result = ballot;
        } else if (u.op == WarpOp::kShuffle) {
          const int source = ShuffleSource(u, other);
          // Reading a lane outside the mask is undefined on the GPU.
          u.result = (mask >> source & 1u) ? run.pool[static_cast<size_t>(base + source)]->slot
                                           : ~uint64_t{0};
        }
        u.group_mask = mask;
        u.group_parity = parity;
        u.group_sync_parity = group_sync_parity;
        u.state = State::kRunnable;
      }
      handled |= mask;
      released = true;
    }
  }
  return released;
}

// Completes a block barrier if every thread waits at the same one; returns
// false when every thread has left the kernel.
bool ResolveBarrier(BlockRun& run) {
  const EmulatedThread* waiting = nullptr;
  const EmulatedThread* exited = nullptr;
  for (int i = 0; i < run.threads; ++i) {
    const EmulatedThread& t = *run.pool[static_cast<size_t>(i)];
    if (t.state == State::kAtBarrier && waiting == nullptr) waiting = &t;
    if (t.state == State::kExited && exited == nullptr) exited = &t;
  }
  if (waiting == nullptr) return false;
  if (exited != nullptr) {
    run.Fail("__syncthreads divergence: " + ThreadName(*waiting) + " " + WhereIs(*waiting) +
             " while " + ThreadName(*exited) + " has left the kernel");
    return false;
  }
  for (int i = 0; i < run.threads; ++i) {
    const EmulatedThread& t = *run.pool[static_cast<size_t>(i)];
    if (!(t.site == waiting->site)) {
      run.Fail("__syncthreads divergence: " + ThreadName(*waiting) + " " + WhereIs(*waiting) +
               " but " + ThreadName(t) + " " + WhereIs(t));
      return false;
    }
  }
  for (int i = 0; i < run.threads; ++i) run.pool[static_cast<size_t>(i)]->state = State::kRunnable;
  return true;
}

void Resume(EmulatedThread& t) {
  t_current = &t;
  t_thread = &t.state_regs;
  t.fiber->SwitchFromHost();
  t_current = nullptr;
  t_thread = nullptr;
}

// Runs one block to completion or failure. REQUIRES: the launch lock.
void RunBlock(BlockRun& run, SharedState& shared, std::vector<int>& order, dim3 block_dim,
              dim3 grid_dim, size_t smem_bytes) {
  for (const auto& [address, bytes] : shared.static_shared) std::memset(address, 0xff, bytes);
  if (smem_bytes > 0) std::memset(run.dynamic_smem, 0xff, smem_bytes);
  for (int i = 0; i < run.threads; ++i) {
    EmulatedThread& t = *run.pool[static_cast<size_t>(i)];
    const unsigned tid = static_cast<unsigned>(i);
    t.state_regs = {{tid % block_dim.x, tid / block_dim.x % block_dim.y,
                     tid / (block_dim.x * block_dim.y)},
                    run.block_idx,
                    block_dim,
                    grid_dim};
    t.state = State::kRunnable;
    t.cancel = false;
    t.barriers_passed = 0;  // every thread of the block starts on barrier_sync[0]
  }
  TsanRelease(&run.start_sync);
  for (;;) {
    if (shared.order == RunOrder::kRandom) std::shuffle(order.begin(), order.end(), shared.rng);
    for (int i : order) {
      EmulatedThread& t = *run.pool[static_cast<size_t>(i)];
      if (t.state == State::kRunnable) Resume(t);
    }
    if (run.failed) break;
    if (ResolveWarps(run)) continue;
    if (run.failed || !ResolveBarrier(run)) break;
  }
  // Unwind the fibers a failure left blocked.
  for (int i = 0; i < run.threads; ++i) {
    EmulatedThread& t = *run.pool[static_cast<size_t>(i)];
    if (t.state != State::kExited) {
      t.cancel = true;
      Resume(t);
    }
  }
  TsanAcquire(&run.end_sync);
  for (int i = 0; i < run.threads; ++i) {
    if (!run.pool[static_cast<size_t>(i)]->fiber->StackIntact()) {
      run.Fail("thread " + std::to_string(i) + " overflowed its fiber stack (raise "
               "KESTREL_CUDA_EMULATION_STACK_BYTES)");
      break;
    }
  }
}

cudaError_t FailLaunch(cudaError_t error, const std::string& message) {
  t_last_launch_error = message;
  std::fprintf(stderr, "cuda emulation: launch failed: %s\n", message.c_str());
  return RecordError(error);
}

}  // namespace

const ThreadState& OutsideKernel() {
  std::fprintf(stderr, "cuda emulation: a device function ran outside a kernel launch\n");
  std::abort();
}

const std::string& LastLaunchError() { return t_last_launch_error; }

void SetRunOrder(RunOrder order, uint64_t seed) {
  std::lock_guard<std::mutex> lock(LaunchMutex());
  SharedState& s = Shared();
  Configure(s);
  s.order = order;
  s.rng.seed(seed);
}

RunOrder GetRunOrder() {
  std::lock_guard<std::mutex> lock(LaunchMutex());
  SharedState& s = Shared();
  Configure(s);
  return s.order;
}

const char* RunOrderName(RunOrder order) {
  switch (order) {
    case RunOrder::kForward: return "forward";
    case RunOrder::kReverse: return "reverse";
    case RunOrder::kRandom: return "random";
  }
  return "?";
}

cudaError_t FuncSetAttribute(const void* kernel, cudaFuncAttribute attr, int value) {
  if (kernel == nullptr) return RecordError(cudaErrorInvalidDeviceFunction);
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 ||
      value > kOptinSharedBytes) {
    return RecordError(cudaErrorInvalidValue);
  }
  std::lock_guard<std::mutex> lock(LaunchMutex());
  Shared().max_dynamic_smem[kernel] = value;
  return cudaSuccess;
}

KESTREL_EMULATOR_CODE unsigned char* DynamicSharedMemory() {
  Self();
  return t_run.dynamic_smem;
}

bool RegisterStaticShared(void* address, size_t bytes) {
  TsanIgnore ignore;
  // Inside a kernel the launch lock is held already; a namespace-scope
  // __shared__ variable registers during static initialisation.
  std::unique_lock<std::mutex> lock(LaunchMutex(), std::defer_lock);
  if (t_current == nullptr) lock.lock();
  Shared().static_shared.emplace_back(static_cast<unsigned char*>(address), bytes);
  std::memset(address, 0xff, bytes);
  return true;
}

KESTREL_EMULATOR_CODE void SyncThreads(const char* file, int line) {
  EmulatedThread& self = Self();
  const unsigned parity = self.barriers_passed & 1u;
  self.site = {file, line};
  self.state = State::kAtBarrier;
  TsanRelease(&t_run.barrier_sync[parity]);
  Block(self);
  TsanAcquire(&t_run.barrier_sync[parity]);
  ++self.barriers_passed;
}

KESTREL_EMULATOR_CODE uint64_t WarpExchange(WarpOp op, unsigned mask, uint64_t bits,
                                            ShuffleMode mode, int lane_arg, int width,
                                            const char* file, int line) {
  EmulatedThread& self = Self();
  if (width <= 0 || width > kWarpSize || (width & (width - 1)) != 0 || lane_arg < 0) {
    t_run.Fail(std::string(OpName(op, mode)) + " at " + std::string(file) + ":" +
               std::to_string(line) + " by " + ThreadName(self) + ": width " +
               std::to_string(width) + " (a power of two up to 32) or lane argument " +
               std::to_string(lane_arg) + " is invalid");
    throw Cancelled{};
  }
  self.site = {file, line};
  self.op = op;
  self.mode = mode;
  self.mask = mask;
  self.slot = bits;
  self.lane_arg = lane_arg;
  self.width = width;
  self.state = State::kAtWarpOp;
  TsanRelease(&self.warp_sync[self.warp_ops_passed & 1u]);
  Block(self);
  ++self.warp_ops_passed;
#if defined(KESTREL_FIBER_TSAN)
  // The first lane of the group to resume collects every lane's release
  // and passes it on through the group's object; the others take it from
  // there (one acquire each instead of one per lane).
  const int base = self.tid & ~(kWarpSize - 1);
  EmulatedThread& owner = *t_run.pool[static_cast<size_t>(base + std::countr_zero(self.group_mask))];
  char* group_sync = &owner.group_sync[self.group_sync_parity];
  if (owner.group_open) {
    owner.group_open = false;
    for (unsigned m = self.group_mask; m != 0; m &= m - 1) {
      const int lane = std::countr_zero(m);
      TsanAcquire(&t_run.pool[static_cast<size_t>(base + lane)]
                       ->warp_sync[self.group_parity >> lane & 1u]);
    }
    TsanRelease(group_sync);
  } else {
    TsanAcquire(group_sync);
  }
#endif
  return self.result;
}

cudaError_t LaunchBlocks(const void* kernel, dim3 grid, dim3 block, size_t dynamic_smem_bytes,
                         void (*body)(void*), void* context) {
  const uint64_t threads = uint64_t{block.x} * block.y * block.z;
  const uint64_t blocks = uint64_t{grid.x} * grid.y * grid.z;
  if (blocks == 0 || threads == 0 || threads > kMaxBlockThreads || block.x > 1024 ||
      block.y > 1024 || block.z > 64 || grid.x > 0x7fffffffu || grid.y > 65535 ||
      grid.z > 65535) {
    return FailLaunch(cudaErrorInvalidConfiguration,
                      "grid (" + std::to_string(grid.x) + "," + std::to_string(grid.y) + "," +
                          std::to_string(grid.z) + ") with blocks (" + std::to_string(block.x) +
                          "," + std::to_string(block.y) + "," + std::to_string(block.z) +
                          "): 1 to 1024 threads per block, grid y and z up to 65535");
  }
  std::lock_guard<std::mutex> lock(LaunchMutex());
  TsanIgnore ignore;
  SharedState& shared = Shared();
  Configure(shared);
  if (dynamic_smem_bytes > kDefaultSharedBytes) {
    const auto it = shared.max_dynamic_smem.find(kernel);
    const size_t allowed = it == shared.max_dynamic_smem.end() ? kDefaultSharedBytes
                                                                : static_cast<size_t>(it->second);
    if (dynamic_smem_bytes > allowed) {
      return FailLaunch(cudaErrorInvalidValue,
                        std::to_string(dynamic_smem_bytes) +
                            " bytes of dynamic shared memory; above 48 KiB a kernel needs "
                            "cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize"
                            ", bytes) first (allowed now: " + std::to_string(allowed) + ")");
    }
  }
  BlockRun& run = t_run;
  if (run.body != nullptr) {
    return FailLaunch(cudaErrorNotSupported, "a kernel launched another kernel");
  }
  while (run.pool.size() < threads) {
    auto t = std::make_unique<EmulatedThread>();
    t->tid = static_cast<int>(run.pool.size());
    t->fiber = std::make_unique<Fiber>(&FiberMain, t.get(), shared.stack_bytes);
    run.pool.push_back(std::move(t));
  }
  std::unique_ptr<unsigned char, void (*)(unsigned char*)> smem(
      static_cast<unsigned char*>(::operator new(dynamic_smem_bytes, std::align_val_t{16})),
      [](unsigned char* p) { ::operator delete(p, std::align_val_t{16}); });
  run.body = body;
  run.context = context;
  run.dynamic_smem = smem.get();
  run.threads = static_cast<int>(threads);
  run.failed = false;
  run.error.clear();

  std::vector<int> order(threads);
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  if (shared.order == RunOrder::kReverse) std::reverse(order.begin(), order.end());
  std::vector<uint64_t> block_order;
  if (shared.order != RunOrder::kForward) {
    block_order.resize(blocks);
    for (uint64_t i = 0; i < blocks; ++i) block_order[i] = i;
    if (shared.order == RunOrder::kReverse) std::reverse(block_order.begin(), block_order.end());
    if (shared.order == RunOrder::kRandom) {
      std::shuffle(block_order.begin(), block_order.end(), shared.rng);
    }
  }
  for (uint64_t i = 0; i < blocks && !run.failed; ++i) {
    const uint64_t b = block_order.empty() ? i : block_order[i];
    run.block_idx = dim3(static_cast<unsigned>(b % grid.x),
                         static_cast<unsigned>(b / grid.x % grid.y),
                         static_cast<unsigned>(b / (uint64_t{grid.x} * grid.y)));
    RunBlock(run, shared, order, block, grid, dynamic_smem_bytes);
  }
  run.body = nullptr;
  run.context = nullptr;
  run.dynamic_smem = nullptr;
  if (run.failed) return FailLaunch(cudaErrorLaunchFailure, run.error);
  t_last_launch_error.clear();
  return cudaSuccess;
}

}  // namespace kestrel::cuda::emulation
