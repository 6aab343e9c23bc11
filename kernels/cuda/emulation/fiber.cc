// Fibers for the CUDA emulation (see fiber.h).
#include "kernels/cuda/emulation/fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#if defined(KESTREL_FIBER_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(KESTREL_FIBER_TSAN)
#include <sanitizer/tsan_interface.h>
#endif

#if defined(KESTREL_FIBER_ASM)
// kestrel_fiber_switch(void** save_sp, void* load_sp): pushes the SysV
// callee-saved registers, stores the stack pointer in *save_sp, loads
// load_sp and pops the other context's registers; `ret` resumes it.
// kestrel_fiber_trampoline is where a new fiber's first switch "returns"
// to: it calls r13(r12), i.e. FiberStart(fiber), which never returns.
asm(R"(
  .text
  .p2align 4
  .globl kestrel_fiber_switch
  .hidden kestrel_fiber_switch
  .type kestrel_fiber_switch, @function
kestrel_fiber_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size kestrel_fiber_switch, .-kestrel_fiber_switch

  .p2align 4
  .globl kestrel_fiber_trampoline
  .hidden kestrel_fiber_trampoline
  .type kestrel_fiber_trampoline, @function
kestrel_fiber_trampoline:
  movq %r12, %rdi
  call *%r13
  ud2
  .size kestrel_fiber_trampoline, .-kestrel_fiber_trampoline
)");
extern "C" void kestrel_fiber_switch(void** save_sp, void* load_sp);
extern "C" void kestrel_fiber_trampoline();
#endif

// The switch code's own accesses are hidden from TSan: they happen after a
// fiber's last release, and the host tears the fibers down later.
#if defined(KESTREL_FIBER_TSAN)
#define KESTREL_FIBER_NO_TSAN __attribute__((no_sanitize_thread))
#else
#define KESTREL_FIBER_NO_TSAN
#endif

namespace kestrel::cuda::emulation {
namespace {

constexpr uint64_t kCanary = 0x6b657374726c6662ull;  // "kestrlfb"
constexpr size_t kCanaryWords = 8;

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "cuda emulation: %s: %s\n", what, std::strerror(errno));
  std::abort();
}

#if !defined(KESTREL_FIBER_ASM)
thread_local Fiber* t_starting = nullptr;
#endif

}  // namespace

// The first code a fiber runs; calls the entry function.
extern "C" void KestrelFiberStart(Fiber* fiber);

Fiber::Fiber(void (*entry)(void*), void* arg, size_t stack_bytes) : entry_(entry), arg_(arg) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  stack_bytes_ = (stack_bytes + page - 1) / page * page;
  mapping_bytes_ = stack_bytes_ + page;
  void* mapping = mmap(nullptr, mapping_bytes_, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mapping == MAP_FAILED) Die("mmap of a fiber stack");
  mapping_ = static_cast<unsigned char*>(mapping);
  if (mprotect(mapping_, page, PROT_NONE) != 0) Die("mprotect of a fiber guard page");
  stack_low_ = mapping_ + page;
  auto* canary = reinterpret_cast<uint64_t*>(stack_low_);
  for (size_t i = 0; i < kCanaryWords; ++i) canary[i] = kCanary;
#if defined(KESTREL_FIBER_ASM)
  // The initial frame kestrel_fiber_switch pops: r15 r14 r13 r12 rbx rbp,
  // then the return address. The trampoline starts with rsp 16-aligned.
  auto* top = reinterpret_cast<void**>(stack_low_ + stack_bytes_);
  void** sp = top - 9;
  sp[0] = nullptr;                                            // r15
  sp[1] = nullptr;                                            // r14
  sp[2] = reinterpret_cast<void*>(&KestrelFiberStart);        // r13
  sp[3] = this;                                               // r12
  sp[4] = nullptr;                                            // rbx
  sp[5] = nullptr;                                            // rbp
  sp[6] = reinterpret_cast<void*>(&kestrel_fiber_trampoline);  // return address
  sp[7] = nullptr;
  sp[8] = nullptr;
  sp_ = sp;
#else
  if (getcontext(&context_) != 0) Die("getcontext");
  context_.uc_stack.ss_sp = stack_low_;
  context_.uc_stack.ss_size = stack_bytes_;
  context_.uc_link = nullptr;
  makecontext(&context_, reinterpret_cast<void (*)()>(+[] { KestrelFiberStart(t_starting); }), 0);
#endif
#if defined(KESTREL_FIBER_TSAN)
  tsan_fiber_ = __tsan_create_fiber(0);
#endif
}

Fiber::~Fiber() {
#if defined(KESTREL_FIBER_TSAN)
  __tsan_destroy_fiber(tsan_fiber_);
#endif
#if defined(KESTREL_FIBER_ASAN)
  // A fiber abandoned mid-kernel leaves its frames' redzones poisoned.
  ASAN_UNPOISON_MEMORY_REGION(stack_low_, stack_bytes_);
#endif
  munmap(mapping_, mapping_bytes_);
}

bool Fiber::StackIntact() const {
  const auto* canary = reinterpret_cast<const uint64_t*>(stack_low_);
  for (size_t i = 0; i < kCanaryWords; ++i) {
    if (canary[i] != kCanary) return false;
  }
  return true;
}

KESTREL_FIBER_NO_TSAN void Fiber::SwitchFromHost() {
#if defined(KESTREL_FIBER_ASAN)
  __sanitizer_start_switch_fiber(&host_fake_stack_, stack_low_, stack_bytes_);
#endif
#if defined(KESTREL_FIBER_TSAN)
  tsan_host_ = __tsan_get_current_fiber();
  __tsan_switch_to_fiber(tsan_fiber_, __tsan_switch_to_fiber_no_sync);
#endif
#if defined(KESTREL_FIBER_ASM)
  kestrel_fiber_switch(&host_sp_, sp_);
#else
  t_starting = this;
  swapcontext(&host_context_, &context_);
#endif
#if defined(KESTREL_FIBER_ASAN)
  __sanitizer_finish_switch_fiber(host_fake_stack_, nullptr, nullptr);
#endif
}

KESTREL_FIBER_NO_TSAN void Fiber::SwitchToHost(bool last) {
#if defined(KESTREL_FIBER_ASAN)
  __sanitizer_start_switch_fiber(last ? nullptr : &fake_stack_, host_stack_low_,
                                 host_stack_bytes_);
#else
  (void)last;
#endif
#if defined(KESTREL_FIBER_TSAN)
  __tsan_switch_to_fiber(tsan_host_, __tsan_switch_to_fiber_no_sync);
#endif
#if defined(KESTREL_FIBER_ASM)
  kestrel_fiber_switch(&sp_, host_sp_);
#else
  swapcontext(&context_, &host_context_);
#endif
#if defined(KESTREL_FIBER_ASAN)
  __sanitizer_finish_switch_fiber(fake_stack_, &host_stack_low_, &host_stack_bytes_);
#endif
}

KESTREL_FIBER_NO_TSAN void Fiber::Run() {
#if defined(KESTREL_FIBER_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, &host_stack_low_, &host_stack_bytes_);
#endif
  entry_(arg_);
  std::fprintf(stderr, "cuda emulation: a fiber's entry function returned\n");
  std::abort();
}

extern "C" KESTREL_FIBER_NO_TSAN void KestrelFiberStart(Fiber* fiber) { fiber->Run(); }

namespace {
struct Ping {
  Fiber* fiber = nullptr;
};
// Bounces straight back to the host, forever.
KESTREL_FIBER_NO_TSAN void PingEntry(void* arg) {
  Ping* p = static_cast<Ping*>(arg);
  for (;;) p->fiber->SwitchToHost();
}
}  // namespace

double MeasureSwitchNanoseconds(int round_trips) {
  Ping ping;
  Fiber fiber(&PingEntry, &ping, 64 * 1024);
  ping.fiber = &fiber;
  fiber.SwitchFromHost();  // warm up
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < round_trips; ++i) fiber.SwitchFromHost();
  const auto elapsed = std::chrono::steady_clock::now() - start;
  return std::chrono::duration<double, std::nano>(elapsed).count() / (2.0 * round_trips);
}

}  // namespace kestrel::cuda::emulation
