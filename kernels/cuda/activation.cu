// SiLU-and-multiply (see activation.h). A 2-D grid: x tiles a row in chunks
// of 256 threads x (1 or 4) elements, y walks the rows (striding when there
// are more than 65535). Each element is read and written by one thread, so
// out may alias gate or up; none of the three is __restrict__.
#include "kernels/cuda/activation.h"

#include "kernels/cuda/cuda_compat.h"

namespace kestrel::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGridY = 65535;

// expf rather than __expf: closer to the CPU kernels, and this kernel is
// bound by memory, not arithmetic.
__device__ __forceinline__ float Silu(float g) { return g / (1.0f + expf(-g)); }

template <bool kVec4>
__global__ void __launch_bounds__(kThreads)
    SiluAndMulKernel(const float* gate, int64_t gate_stride, const float* up, int64_t up_stride,
                     float* out, int64_t out_stride, int64_t rows, int64_t dim) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t units = kVec4 ? dim / 4 : dim;
  if (i >= units) return;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const float* g = gate + r * gate_stride;
    const float* u = up + r * up_stride;
    float* o = out + r * out_stride;
    if constexpr (kVec4) {
      const float4 a = reinterpret_cast<const float4*>(g)[i];
      const float4 b = reinterpret_cast<const float4*>(u)[i];
      reinterpret_cast<float4*>(o)[i] =
          make_float4(Silu(a.x) * b.x, Silu(a.y) * b.y, Silu(a.z) * b.z, Silu(a.w) * b.w);
    } else {
      o[i] = Silu(g[i]) * u[i];
    }
  }
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

cudaError_t SiluAndMul(const float* gate, int64_t gate_stride, const float* up, int64_t up_stride,
                       float* out, int64_t out_stride, int64_t rows, int64_t dim,
                       cudaStream_t stream) {
  if (rows < 0 || dim < 0 || gate_stride < dim || up_stride < dim || out_stride < dim) {
    return cudaErrorInvalidValue;
  }
  if (rows == 0 || dim == 0) return cudaSuccess;
  if (gate == nullptr || up == nullptr || out == nullptr) return cudaErrorInvalidValue;
  const bool vec4 = dim % 4 == 0 && gate_stride % 4 == 0 && up_stride % 4 == 0 &&
                    out_stride % 4 == 0 && Aligned16(gate) && Aligned16(up) && Aligned16(out);
  const int64_t units = vec4 ? dim / 4 : dim;
  const int64_t chunks = (units + kThreads - 1) / kThreads;
  if (chunks > 0x7fffffff) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(chunks),
                  static_cast<unsigned>(rows < kMaxGridY ? rows : kMaxGridY));
  if (vec4) {
    return launch_kernel(SiluAndMulKernel<true>, grid, dim3(kThreads), 0, stream, gate, gate_stride,
                         up, up_stride, out, out_stride, rows, dim);
  }
  return launch_kernel(SiluAndMulKernel<false>, grid, dim3(kThreads), 0, stream, gate, gate_stride,
                       up, up_stride, out, out_stride, rows, dim);
}

}  // namespace kestrel::cuda
