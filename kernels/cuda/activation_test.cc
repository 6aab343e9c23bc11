// The CUDA SiLU-and-multiply against the CPU kernel (kernels/cpu/
// activation.h, scalar variant): gate and up as the halves of one fused
// buffer or separate padded rows, out aliasing gate or up, NaN padding never
// written, extreme inputs, and the argument checks.
#include "kernels/cuda/activation.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/test_util.h"
#include "kernels/cuda/elem_test_util.h"

namespace kestrel::cuda {
namespace {

using kernels::testing::NaNVector;
using kernels::testing::RandomVector;
using testing::CheckPaddingUntouched;
using testing::CompareBits;
using testing::CompareRowsClose;
using testing::DeviceArray;
using testing::RequireSuccess;

constexpr float kAtol = 1e-6f, kRtol = 2e-6f;

std::vector<float> Cpu(const std::vector<float>& gate, int64_t gate_stride,
                       const std::vector<float>& up, int64_t up_stride, int64_t rows, int64_t dim,
                       std::vector<float> out, int64_t out_stride, int64_t gate_offset = 0,
                       int64_t up_offset = 0) {
  REQUIRE(kernels::cpu::SiluAndMul(gate.data() + gate_offset, gate_stride, up.data() + up_offset,
                                   up_stride, out.data(), out_stride, rows, dim, nullptr,
                                   kernels::cpu::Isa::kScalar)
              .ok());
  return out;
}

TEST_CASE("CUDA SiluAndMul matches the CPU kernel on a fused gate|up buffer",
          "[cuda][activation]") {
  for (int64_t dim : {1, 7, 64, 80, 128, 1000, 2816}) {
    for (int64_t rows : {1, 3, 17}) {
      // [rows, 2 * dim]: gate then up, as a fused gate_up projection
      // writes them; out [rows, dim + pad] with NaN padding.
      for (int64_t pad : {0, 3}) {
        INFO("dim=" << dim << " rows=" << rows << " pad=" << pad);
        const std::vector<float> gu =
            RandomVector(static_cast<size_t>(rows * 2 * dim), 1 + dim, -8, 8);
        const int64_t out_stride = dim + pad;
        const std::vector<float> before = NaNVector(static_cast<size_t>(rows * out_stride));
        const std::vector<float> want =
            Cpu(gu, 2 * dim, gu, 2 * dim, rows, dim, before, out_stride, 0, dim);
        DeviceArray<float> d_gu(gu), d_out(before);
        RequireSuccess(SiluAndMul(d_gu.get(), 2 * dim, d_gu.get() + dim, 2 * dim, d_out.get(),
                                  out_stride, rows, dim, nullptr));
        const std::vector<float> got = d_out.Download();
        CHECK(CompareRowsClose(got, want, rows, dim, out_stride, kAtol, kRtol) == "");
        CHECK(CheckPaddingUntouched(got, before, rows, dim, out_stride) == "");
        CHECK(CompareBits(d_gu.Download(), gu) == "");
      }
    }
  }
}

TEST_CASE("CUDA SiluAndMul writes in place over gate or up", "[cuda][activation]") {
  for (int64_t dim : {7, 128}) {
    for (bool over_gate : {true, false}) {
      INFO("dim=" << dim << " over_gate=" << over_gate);
      const int64_t rows = 3, stride = dim + 1;
      std::vector<float> gate = RandomVector(static_cast<size_t>(rows * stride), 2, -8, 8);
      std::vector<float> up = RandomVector(static_cast<size_t>(rows * stride), 3, -8, 8);
      for (int64_t r = 0; r < rows; ++r) {
        gate[r * stride + dim] = std::numeric_limits<float>::quiet_NaN();
        up[r * stride + dim] = std::numeric_limits<float>::quiet_NaN();
      }
      const std::vector<float> want =
          Cpu(gate, stride, up, stride, rows, dim, over_gate ? gate : up, stride);
      DeviceArray<float> d_gate(gate), d_up(up);
      float* out = over_gate ? d_gate.get() : d_up.get();
      RequireSuccess(
          SiluAndMul(d_gate.get(), stride, d_up.get(), stride, out, stride, rows, dim, nullptr));
      const std::vector<float> got = over_gate ? d_gate.Download() : d_up.Download();
      CHECK(CompareRowsClose(got, want, rows, dim, stride, kAtol, kRtol) == "");
      CHECK(CheckPaddingUntouched(got, over_gate ? gate : up, rows, dim, stride) == "");
    }
  }
}

TEST_CASE("CUDA SiluAndMul handles extreme gates", "[cuda][activation]") {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> gate = {-1000.0f, -88.0f, -20.0f,  -1e-30f, 0.0f, 1e-30f,
                                   20.0f,    88.0f,  1000.0f, inf,     3.0f};
  const std::vector<float> up(gate.size(), 2.0f);
  const int64_t dim = static_cast<int64_t>(gate.size());
  const std::vector<float> want =
      Cpu(gate, dim, up, dim, 1, dim, std::vector<float>(gate.size()), dim);
  DeviceArray<float> d_gate(gate), d_up(up), d_out(gate.size());
  RequireSuccess(SiluAndMul(d_gate.get(), dim, d_up.get(), dim, d_out.get(), dim, 1, dim, nullptr));
  const std::vector<float> got = d_out.Download();
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("gate " << gate[i] << ": got " << got[i] << ", want " << want[i]);
    if (std::isinf(want[i])) {
      CHECK(got[i] == want[i]);
    } else {
      CHECK(std::fabs(got[i] - want[i]) <= kAtol + kRtol * std::fabs(want[i]));
    }
  }
}

TEST_CASE("CUDA SiluAndMul rejects bad arguments", "[cuda][activation]") {
  DeviceArray<float> a(64), b(64), c(64);
  CHECK(SiluAndMul(a.get(), 8, b.get(), 8, c.get(), 8, 2, 8, nullptr) == cudaSuccess);
  CHECK(SiluAndMul(a.get(), 7, b.get(), 8, c.get(), 8, 2, 8, nullptr) == cudaErrorInvalidValue);
  CHECK(SiluAndMul(a.get(), 8, b.get(), 7, c.get(), 8, 2, 8, nullptr) == cudaErrorInvalidValue);
  CHECK(SiluAndMul(a.get(), 8, b.get(), 8, c.get(), 7, 2, 8, nullptr) == cudaErrorInvalidValue);
  CHECK(SiluAndMul(a.get(), 8, b.get(), 8, c.get(), 8, -1, 8, nullptr) == cudaErrorInvalidValue);
  CHECK(SiluAndMul(a.get(), 8, b.get(), 8, c.get(), 8, 2, -1, nullptr) == cudaErrorInvalidValue);
  CHECK(SiluAndMul(nullptr, 8, b.get(), 8, c.get(), 8, 2, 8, nullptr) == cudaErrorInvalidValue);
  CHECK(SiluAndMul(a.get(), 8, nullptr, 8, c.get(), 8, 2, 8, nullptr) == cudaErrorInvalidValue);
  CHECK(SiluAndMul(a.get(), 8, b.get(), 8, nullptr, 8, 2, 8, nullptr) == cudaErrorInvalidValue);
  CHECK(SiluAndMul(nullptr, 8, nullptr, 8, nullptr, 8, 0, 8, nullptr) == cudaSuccess);
  CHECK(SiluAndMul(nullptr, 0, nullptr, 0, nullptr, 0, 4, 0, nullptr) == cudaSuccess);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
}

}  // namespace
}  // namespace kestrel::cuda
