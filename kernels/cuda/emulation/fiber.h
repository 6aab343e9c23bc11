// Fibers for the CUDA emulation: a stack and a saved context per emulated
// CUDA thread, switched cooperatively on one host thread.
//
// On x86-64 the switch is a few lines of assembly that save the six
// callee-saved registers and the stack pointer (the SysV ABI makes every
// other register caller-saved, so a switch is an ordinary function call);
// elsewhere it is ucontext's swapcontext(), which is much slower (a
// sigprocmask system call per switch). Stacks are mmap'ed with a
// PROT_NONE guard page below them and a canary above the guard page that
// Fiber::StackIntact() checks. The sanitizers are told about every switch:
// ASan (__sanitizer_{start,finish}_switch_fiber) so it knows which stack is
// live, TSan (__tsan_switch_to_fiber) so each fiber is its own TSan thread
// whose only ordering with the others is what the emulation annotates.
#ifndef KESTREL_KERNELS_CUDA_EMULATION_FIBER_H_
#define KESTREL_KERNELS_CUDA_EMULATION_FIBER_H_

#include <cstddef>
#include <cstdint>

// The assembly switch on x86-64 unless KESTREL_FIBER_UCONTEXT asks for the
// portable one (to test it).
#if defined(__x86_64__) && !defined(KESTREL_FIBER_UCONTEXT)
#define KESTREL_FIBER_ASM 1
#else
#include <ucontext.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#define KESTREL_FIBER_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#define KESTREL_FIBER_TSAN 1
#endif

namespace kestrel::cuda::emulation {

class Fiber {
 public:
  // Creates a fiber that will run `entry(arg)` when first switched to.
  // `entry` must never return: it switches away for the last time instead.
  Fiber(void (*entry)(void*), void* arg, size_t stack_bytes);
  ~Fiber();
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;

  // Switches from the host thread's own context to this fiber, returns when
  // the fiber calls SwitchToHost(). REQUIRES: called on the host thread's
  // context, not from a fiber.
  void SwitchFromHost();
  // Switches from this fiber (the running one) back to the host context.
  // `last` says the fiber will never run again (for ASan's fake stacks).
  void SwitchToHost(bool last = false);
  // The fiber's first code (called by the start-up trampoline): completes
  // the switch into the fiber and calls the entry function.
  [[noreturn]] void Run();

  // False when the canary at the stack's low end was overwritten.
  bool StackIntact() const;

 private:
  void (*entry_)(void*);
  void* arg_;
  unsigned char* mapping_ = nullptr;  // guard page + stack
  size_t mapping_bytes_ = 0;
  unsigned char* stack_low_ = nullptr;
  size_t stack_bytes_ = 0;
#if defined(KESTREL_FIBER_ASM)
  void* sp_ = nullptr;       // the fiber's saved stack pointer
  void* host_sp_ = nullptr;  // the host context's, while the fiber runs
#else
  ucontext_t context_;
  ucontext_t host_context_;
#endif
#if defined(KESTREL_FIBER_ASAN)
  void* fake_stack_ = nullptr;       // the fiber's, while suspended
  void* host_fake_stack_ = nullptr;  // the host's, while the fiber runs
  const void* host_stack_low_ = nullptr;
  size_t host_stack_bytes_ = 0;
#endif
#if defined(KESTREL_FIBER_TSAN)
  void* tsan_fiber_ = nullptr;
  void* tsan_host_ = nullptr;
#endif
};

// Measures the cost of one switch (host -> fiber or back) in nanoseconds,
// over `round_trips` round trips.
double MeasureSwitchNanoseconds(int round_trips);

}  // namespace kestrel::cuda::emulation

#endif  // KESTREL_KERNELS_CUDA_EMULATION_FIBER_H_
