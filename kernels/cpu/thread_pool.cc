// Persistent thread pool (see thread_pool.h). One job at a time: the caller
// writes the job, opens it, and bumps `generation`; the caller and every
// worker that joins grab chunks from an atomic counter. When the counter
// runs out the caller closes the job and waits only for the workers that
// joined it (`active`): a worker that was not scheduled in time simply
// misses the job, so on a busy machine the caller never waits for a thread
// that never ran. Workers poll `generation` for spin_microseconds before
// sleeping on the condition variable.
//
// Why this is safe: a worker increments `active` and only then reads `open`
// (both seq_cst); the caller stores open = false and only then reads
// `active`. Either the caller sees the worker's increment (and waits for it)
// or the worker sees the job closed (and touches nothing). A worker that
// arrives so late that it sees the *next* job open joins that job, whose
// fields the open flag's release/acquire publishes.
#include "kernels/cpu/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"

namespace kestrel::kernels::cpu {
namespace {

thread_local bool t_inside_parallel_for = false;

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

}  // namespace

struct ThreadPool::Impl {
  // Constant after construction.
  int num_threads = 1;
  int spin_microseconds = 0;
  std::vector<std::thread> workers;

  // Serializes ParallelFor callers.
  std::mutex call_mu;

  // Wakes sleeping workers and the waiting caller.
  std::mutex mu;
  std::condition_variable work_cv;
  std::condition_variable done_cv;
  bool stop = false;  // protected by mu

  // The current job: written by the caller before `generation` is bumped
  // (release), read by workers after they see the new generation (acquire).
  std::atomic<uint64_t> generation{0};
  const absl::FunctionRef<void(int64_t, int64_t)>* fn = nullptr;
  int64_t n = 0;
  int64_t grain = 1;
  int64_t grains = 0;      // ceil(n / grain)
  int64_t num_chunks = 0;  // chunk c covers grains [c*grains/num_chunks, (c+1)*grains/num_chunks)
  std::atomic<int64_t> next_chunk{0};
  std::atomic<bool> open{false};  // chunks may still be taken
  std::atomic<int> active{0};     // workers inside a job (see the file comment)

  void RunChunks() {
    for (;;) {
      const int64_t c = next_chunk.fetch_add(1, std::memory_order_relaxed);
      if (c >= num_chunks) return;
      const int64_t begin = c * grains / num_chunks * grain;
      const int64_t end = std::min(n, (c + 1) * grains / num_chunks * grain);
      if (begin < end) (*fn)(begin, end);
    }
  }

  void WorkerLoop() {
    t_inside_parallel_for = true;
    uint64_t seen = 0;
    for (;;) {
      // Spin, then sleep, until a new job or stop.
      bool have_job = false;
      const auto spin_until =
          std::chrono::steady_clock::now() + std::chrono::microseconds(spin_microseconds);
      for (int iter = 0; spin_microseconds > 0; ++iter) {
        if (generation.load(std::memory_order_acquire) != seen) {
          have_job = true;
          break;
        }
        CpuRelax();
        if ((iter & 255) == 255 && std::chrono::steady_clock::now() > spin_until) break;
      }
      if (!have_job) {
        std::unique_lock<std::mutex> lock(mu);
        work_cv.wait(lock, [&] {
          return stop || generation.load(std::memory_order_acquire) != seen;
        });
        if (stop) return;
      }
      seen = generation.load(std::memory_order_acquire);
      active.fetch_add(1, std::memory_order_seq_cst);
      if (open.load(std::memory_order_seq_cst)) RunChunks();
      if (active.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lock(mu);
        done_cv.notify_one();
      }
    }
  }
};

ThreadPool::ThreadPool(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

absl::StatusOr<std::unique_ptr<ThreadPool>> ThreadPool::Create(const Options& options) {
  if (options.num_threads < 0 || options.num_threads > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("thread pool num_threads must be in [0, 1024], got ", options.num_threads));
  }
  if (options.spin_microseconds < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "thread pool spin_microseconds must be >= 0, got ", options.spin_microseconds));
  }
  auto impl = std::make_unique<Impl>();
  impl->num_threads = options.num_threads > 0
                          ? options.num_threads
                          : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  impl->spin_microseconds = options.spin_microseconds;
  Impl* raw = impl.get();
  for (int i = 1; i < impl->num_threads; ++i) {
    impl->workers.emplace_back([raw] { raw->WorkerLoop(); });
  }
  return std::unique_ptr<ThreadPool>(new ThreadPool(std::move(impl)));
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stop = true;
  }
  impl_->work_cv.notify_all();
  for (std::thread& t : impl_->workers) t.join();
}

int ThreadPool::num_threads() const { return impl_->num_threads; }

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             absl::FunctionRef<void(int64_t, int64_t)> fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  Impl& s = *impl_;
  const int64_t grains = (n + grain - 1) / grain;
  if (s.workers.empty() || grains == 1 || t_inside_parallel_for) {
    fn(0, n);
    return;
  }
  std::lock_guard<std::mutex> call_lock(s.call_mu);
  t_inside_parallel_for = true;
  // Four equal chunks (to within one grain) per thread: enough to even out
  // a noisy neighbour, few enough that chunk bookkeeping stays negligible,
  // and a multiple of the thread count so equal-speed threads finish
  // together (memory-bound GEMV).
  s.fn = &fn;
  s.n = n;
  s.grain = grain;
  s.grains = grains;
  s.num_chunks = std::min<int64_t>(grains, static_cast<int64_t>(s.num_threads) * 4);
  s.next_chunk.store(0, std::memory_order_relaxed);
  s.open.store(true, std::memory_order_seq_cst);
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.generation.fetch_add(1, std::memory_order_release);
  }
  s.work_cv.notify_all();
  s.RunChunks();
  // All chunks are taken. Close the job and wait for the workers that joined
  // it: fn and the job fields must stay valid until they leave.
  s.open.store(false, std::memory_order_seq_cst);
  const auto spin_until =
      std::chrono::steady_clock::now() + std::chrono::microseconds(s.spin_microseconds);
  for (int iter = 0;; ++iter) {
    if (s.active.load(std::memory_order_seq_cst) == 0) break;
    CpuRelax();
    if ((iter & 255) == 255 && std::chrono::steady_clock::now() > spin_until) {
      std::unique_lock<std::mutex> lock(s.mu);
      s.done_cv.wait(lock, [&] { return s.active.load(std::memory_order_seq_cst) == 0; });
      break;
    }
  }
  t_inside_parallel_for = false;
}

void ParallelFor(ThreadPool* pool, int64_t n, int64_t grain,
                 absl::FunctionRef<void(int64_t, int64_t)> fn) {
  if (n <= 0) return;
  if (pool == nullptr) {
    fn(0, n);
    return;
  }
  pool->ParallelFor(n, grain, fn);
}

}  // namespace kestrel::kernels::cpu
