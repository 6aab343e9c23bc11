// A backend bundles what one worker computes with: a Device (memory,
// copies, synchronization, the stream) and the Ops that run on that
// device's memory. The model runner is written against this pair only, so
// a new backend (CUDA next to the CPU one) needs no change above it.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend,
//                    cpu::CreateCpuBackend({.num_threads = 2}));
//   ASSIGN_OR_RETURN(DeviceBuffer x, backend->device().Allocate(bytes, "hidden"));
//   RETURN_IF_ERROR(backend->ops().RmsNorm(x.as<float>(), ...));
#ifndef KESTREL_KERNELS_BACKEND_H_
#define KESTREL_KERNELS_BACKEND_H_

#include <string>

#include "kernels/device.h"
#include "kernels/ops.h"

namespace kestrel::kernels {

// Thread-compatible: one worker thread uses a backend.
class Backend {
 public:
  virtual ~Backend() = default;

  virtual Device& device() = 0;
  // Ops issued on device()'s stream, taking device pointers.
  virtual Ops& ops() = 0;
  // One line for logs: "cpu (avx512, 2 threads)".
  virtual std::string Describe() const = 0;
};

}  // namespace kestrel::kernels

#endif  // KESTREL_KERNELS_BACKEND_H_
