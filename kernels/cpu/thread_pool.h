// A persistent pool of worker threads for the CPU kernels: GEMM and attention
// split their output columns / heads over it with ParallelFor. Threads are
// created once in Create(); a call only wakes them (they spin briefly before
// sleeping, so back-to-back kernels of a decode step do not pay a futex wake
// each).
//
//   ASSIGN_OR_RETURN(auto pool, ThreadPool::Create({.num_threads = 2}));
//   pool->ParallelFor(n, /*grain=*/16, [&](int64_t begin, int64_t end) { ... });
#ifndef KESTREL_KERNELS_CPU_THREAD_POOL_H_
#define KESTREL_KERNELS_CPU_THREAD_POOL_H_

#include <cstdint>
#include <memory>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"

namespace kestrel::kernels::cpu {

// Thread-safe: ParallelFor may be called from several threads; calls are
// serialized. A ParallelFor issued from inside a ParallelFor body (nested)
// runs inline on the calling thread.
class ThreadPool {
 public:
  struct Options {
    // Total threads running a ParallelFor, including the caller (so
    // num_threads - 1 workers are started). 0 means one per online CPU.
    int num_threads = 0;
    // How long an idle worker polls for new work before blocking on a
    // condition variable. 0 blocks at once (kinder to a shared machine).
    int spin_microseconds = 100;
  };

  static absl::StatusOr<std::unique_ptr<ThreadPool>> Create(const Options& options);
  ~ThreadPool();  // joins the workers

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const;

  // Calls fn(begin, end) on disjoint ranges that together cover [0, n), each
  // (except possibly the last) a multiple of `grain` long, spread over the
  // threads; returns when all are done. fn must not throw.
  // REQUIRES: n >= 0, grain >= 1.
  void ParallelFor(int64_t n, int64_t grain, absl::FunctionRef<void(int64_t, int64_t)> fn);

 private:
  struct Impl;
  explicit ThreadPool(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Runs fn over [0, n) on `pool`, or inline in one range if pool is null.
void ParallelFor(ThreadPool* pool, int64_t n, int64_t grain,
                 absl::FunctionRef<void(int64_t, int64_t)> fn);

}  // namespace kestrel::kernels::cpu

#endif  // KESTREL_KERNELS_CPU_THREAD_POOL_H_
