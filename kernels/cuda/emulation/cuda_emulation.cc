// The CPU emulation of the CUDA execution model (see cuda_emulation.h).
//
// Barrier protocol: a thread records where it is (file:line) and arrives at
// the block's (or warp's) std::barrier; once all have arrived, each checks
// that everyone recorded the same place, then all arrive a second time so no
// one records the next place while another still reads this one. A thread
// that leaves the kernel records "left" and drops out of both barriers, so
// threads still waiting are released and see it.
#include "kernels/cuda/emulation/cuda_emulation.h"

#include <barrier>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorNotSupported: return "operation not supported";
  }
  return "unknown error";
}

namespace kestrel::cuda::emulation {
namespace {

constexpr int kWarpSize = 32;
constexpr unsigned kMaxBlockThreads = 1024;

// Where a thread is: a barrier or shuffle call site, or out of the kernel.
struct Site {
  const char* file = nullptr;
  int line = 0;
  bool left = false;
  bool operator==(const Site& o) const {
    return left == o.left && line == o.line && (file == o.file || std::strcmp(file, o.file) == 0);
  }
  std::string Describe() const {
    return left ? std::string("has left the kernel") : std::string(file) + ":" + std::to_string(line);
  }
};

struct WarpState {
  explicit WarpState(int n) : lanes(n), barrier(n) {}
  const int lanes;
  std::barrier<> barrier;
  uint64_t values[kWarpSize] = {};
  Site sites[kWarpSize];
};

struct BlockState {
  explicit BlockState(int n) : threads(n), barrier(n), sites(static_cast<size_t>(n)) {
    for (int w = 0; w * kWarpSize < n; ++w) {
      warps.push_back(std::make_unique<WarpState>(std::min(kWarpSize, n - w * kWarpSize)));
    }
  }
  void Fail(const std::string& message) {
    std::lock_guard<std::mutex> lock(error_mu);
    if (error.empty()) error = message;
  }
  const int threads;
  std::barrier<> barrier;
  std::vector<Site> sites;
  std::vector<std::unique_ptr<WarpState>> warps;
  std::mutex error_mu;
  std::string error;  // the first failure
};

struct EmulatedThread {
  ThreadContext ctx;
  BlockState* block = nullptr;
  int tid = 0;  // linear index in the block
};

thread_local EmulatedThread* t_current = nullptr;
thread_local std::string t_last_error;

EmulatedThread& Self() {
  if (t_current == nullptr) {
    std::fprintf(stderr, "cuda emulation: a device function ran outside a kernel launch\n");
    std::abort();
  }
  return *t_current;
}

std::string Where(const BlockState& b, const ThreadContext& c) {
  return "block (" + std::to_string(c.block_idx.x) + "," + std::to_string(c.block_idx.y) + "," +
         std::to_string(c.block_idx.z) + ") of " + std::to_string(b.threads) + " threads";
}

}  // namespace

const ThreadContext& Current() { return Self().ctx; }

void SyncThreads(const char* file, int line) {
  EmulatedThread& t = Self();
  BlockState& b = *t.block;
  const Site here{file, line};
  b.sites[static_cast<size_t>(t.tid)] = here;
  b.barrier.arrive_and_wait();
  for (int i = 0; i < b.threads; ++i) {
    if (!(b.sites[static_cast<size_t>(i)] == here)) {
      b.Fail("__syncthreads divergence in " + Where(b, t.ctx) + ": thread " +
             std::to_string(t.tid) + " waits at " + here.Describe() + ", thread " +
             std::to_string(i) + " " + (b.sites[static_cast<size_t>(i)].left ? "" : "is at ") +
             b.sites[static_cast<size_t>(i)].Describe());
      break;
    }
  }
  b.barrier.arrive_and_wait();
}

uint64_t ShuffleXor(unsigned mask, uint64_t bits, int lane_mask, const char* file, int line) {
  EmulatedThread& t = Self();
  BlockState& b = *t.block;
  WarpState& w = *b.warps[static_cast<size_t>(t.tid / kWarpSize)];
  const int lane = t.tid % kWarpSize;
  const unsigned present =
      w.lanes == kWarpSize ? 0xffffffffu : (1u << static_cast<unsigned>(w.lanes)) - 1;
  const Site here{file, line};
  if (mask != present) {
    b.Fail("__shfl_xor_sync at " + here.Describe() + " in " + Where(b, t.ctx) + ": mask 0x" +
           [&] { char s[16]; std::snprintf(s, sizeof s, "%08x", mask); return std::string(s); }() +
           " is not the warp's " + std::to_string(w.lanes) + " present lanes (partial masks are " +
           "not emulated)");
  }
  w.values[lane] = bits;
  w.sites[lane] = here;
  w.barrier.arrive_and_wait();
  for (int i = 0; i < w.lanes; ++i) {
    if (!(w.sites[i] == here)) {
      b.Fail("warp divergence in " + Where(b, t.ctx) + ": lane " + std::to_string(lane) +
             " shuffles at " + here.Describe() + ", lane " + std::to_string(i) + " " +
             (w.sites[i].left ? "" : "is at ") + w.sites[i].Describe());
      break;
    }
  }
  const int partner = lane ^ lane_mask;
  uint64_t result = bits;
  if (lane_mask < 0 || partner >= w.lanes) {
    b.Fail("__shfl_xor_sync at " + here.Describe() + ": lane " + std::to_string(lane) +
           " xor " + std::to_string(lane_mask) + " names an absent lane");
  } else {
    result = w.values[partner];
  }
  w.barrier.arrive_and_wait();
  return result;
}

cudaError_t LaunchBlocks(dim3 grid, dim3 block, size_t dynamic_smem_bytes,
                         const std::function<void()>& body) {
  const unsigned threads = block.x * block.y * block.z;
  if (grid.x * grid.y * grid.z == 0 || threads == 0 || threads > kMaxBlockThreads) {
    t_last_error = "launch with grid (" + std::to_string(grid.x) + "," + std::to_string(grid.y) +
                   "," + std::to_string(grid.z) + ") and " + std::to_string(threads) +
                   " threads per block (1 to 1024)";
    return cudaErrorInvalidValue;
  }
  if (dynamic_smem_bytes > 0) {
    t_last_error = "dynamic shared memory is not emulated";
    return cudaErrorNotSupported;
  }
  for (unsigned bz = 0; bz < grid.z; ++bz) {
    for (unsigned by = 0; by < grid.y; ++by) {
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        BlockState state(static_cast<int>(threads));
        std::vector<EmulatedThread> contexts(threads);
        std::vector<std::thread> workers;
        workers.reserve(threads);
        for (unsigned tid = 0; tid < threads; ++tid) {
          EmulatedThread& e = contexts[tid];
          e.ctx = {dim3(tid % block.x, tid / block.x % block.y, tid / (block.x * block.y)),
                   dim3(bx, by, bz), block, grid};
          e.block = &state;
          e.tid = static_cast<int>(tid);
          workers.emplace_back([&e, &body] {
            t_current = &e;
            body();
            BlockState& b = *e.block;
            b.sites[static_cast<size_t>(e.tid)] = Site{nullptr, 0, true};
            b.warps[static_cast<size_t>(e.tid / kWarpSize)]->sites[e.tid % kWarpSize] =
                Site{nullptr, 0, true};
            b.warps[static_cast<size_t>(e.tid / kWarpSize)]->barrier.arrive_and_drop();
            b.barrier.arrive_and_drop();
            t_current = nullptr;
          });
        }
        for (std::thread& w : workers) w.join();
        if (!state.error.empty()) {
          t_last_error = state.error;
          return cudaErrorLaunchFailure;
        }
      }
    }
  }
  t_last_error.clear();
  return cudaSuccess;
}

const std::string& LastLaunchError() { return t_last_error; }

}  // namespace kestrel::cuda::emulation
