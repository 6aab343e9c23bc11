// CublasGemm (cuBLAS path, its cast and bias kernels, the GEMV dispatch)
// against kernels::reference::Gemm on awkward shapes with padded, NaN-filled
// strides; the argument and status errors. Under emulation cuBLAS is the
// shim in cublas_emulation/; the _gpu binary runs the same checks on cuBLAS.
#include "kernels/cuda/gemm.h"

#include <climits>
#include <cstring>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cuda/gemm_test_util.h"

namespace kestrel::cuda {
namespace {

using kernels::DType;
using testing::DeviceArray;
using testing::Problem;

std::unique_ptr<CublasGemm> MakeGemm(int64_t gemv_max_rows) {
  CublasGemmOptions options;
  options.gemv_max_rows = gemv_max_rows;
  options.cublas_workspace_bytes = size_t{4} << 20;
  std::unique_ptr<CublasGemm> gemm;
  const GemmStatus s = CublasGemm::Create(options, nullptr, &gemm);
  INFO(s.Message());
  REQUIRE(s.ok());
  REQUIRE(gemm != nullptr);
  return gemm;
}

// Runs `p` through `gemm` on the device; returns y as the device left it.
std::vector<float> Run(CublasGemm& gemm, const Problem& p) {
  const DeviceArray<float> x(p.x), b(p.b), y(p.y);
  const std::vector<uint8_t> weight_bytes(
      static_cast<const uint8_t*>(p.w.data()),
      static_cast<const uint8_t*>(p.w.data()) +
          (p.w.dtype == DType::kF32 ? p.w.f32.size() * 4 : p.w.bits.size() * 2));
  const DeviceArray<uint8_t> w(weight_bytes);
  const size_t workspace_bytes = GemmWorkspaceBytes(p.w.dtype, p.m, p.k);
  const DeviceArray<uint8_t> workspace(std::vector<uint8_t>(workspace_bytes + 1, 0xff));
  const GemmStatus s = gemm.Gemm(x.get(), p.ldx, w.get(), p.w.dtype, p.ldw,
                                 p.bias ? b.get() : nullptr, y.get(), p.ldy, p.m, p.n, p.k,
                                 p.accumulate, workspace.get(), workspace_bytes);
  INFO(s.Message());
  REQUIRE(s.ok());
  return y.Download();
}

constexpr float kTolerance = 1e-5f;

TEST_CASE("cuBLAS path matches the CPU reference", "[cuda][gemm]") {
  const std::unique_ptr<CublasGemm> gemm = MakeGemm(/*gemv_max_rows=*/0);
  struct Shape {
    int64_t n, k;
  };
  const Shape shapes[] = {{1, 1}, {7, 33}, {33, 7}, {257, 257}, {9, 100}};
  uint32_t seed = 1;
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (int64_t m : {1, 3, 17, 64}) {
      for (const Shape& shape : shapes) {
        // Cycle through the four bias/accumulate combinations.
        const bool bias = seed % 2 == 1, accumulate = seed / 2 % 2 == 1;
        ++seed;
        INFO(kernels::DTypeName(dtype) << " m=" << m << " n=" << shape.n << " k=" << shape.k
                                       << " bias=" << bias << " accumulate=" << accumulate);
        const Problem p(dtype, m, shape.n, shape.k, bias, accumulate, seed * 10);
        const std::vector<float> got = Run(*gemm, p);
        // cuBLAS multiplies x rounded to the weight dtype.
        CHECK(testing::CompareY(p, got, p.Reference(/*round_x=*/true), kTolerance, kTolerance) ==
              "");
      }
    }
  }
}

TEST_CASE("cuBLAS path: every bias/accumulate combination, wide strides", "[cuda][gemm]") {
  const std::unique_ptr<CublasGemm> gemm = MakeGemm(0);
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    for (bool bias : {false, true}) {
      for (bool accumulate : {false, true}) {
        INFO(kernels::DTypeName(dtype) << " bias=" << bias << " accumulate=" << accumulate);
        const Problem p(dtype, 19, 13, 45, bias, accumulate, 7, /*x_pad=*/20, /*w_pad=*/11,
                        /*y_pad=*/9);
        CHECK(testing::CompareY(p, Run(*gemm, p), p.Reference(true), kTolerance, kTolerance) ==
              "");
      }
    }
  }
}

TEST_CASE("Gemm uses the GEMV kernel up to gemv_max_rows", "[cuda][gemm]") {
  // BF16 weights tell the paths apart: cuBLAS rounds x to bf16, the GEMV
  // kernel does not.
  const std::unique_ptr<CublasGemm> gemm = MakeGemm(4);
  for (int64_t m : {1, 4, 5, 9}) {
    INFO("m=" << m);
    const Problem p(DType::kBF16, m, 40, 300, true, false, 100 + static_cast<uint32_t>(m));
    const std::vector<float> exact = p.Reference(false), rounded = p.Reference(true);
    REQUIRE(testing::CompareY(p, exact, rounded, kTolerance, kTolerance) != "");
    const std::vector<float> got = Run(*gemm, p);
    CHECK(testing::CompareY(p, got, m <= 4 ? exact : rounded, kTolerance, kTolerance) == "");
  }
}

TEST_CASE("Gemm with k == 0 writes the bias, m == 0 or n == 0 nothing", "[cuda][gemm]") {
  const std::unique_ptr<CublasGemm> gemm = MakeGemm(kGemvMaxRows);
  for (int64_t m : {2, 20}) {  // GEMV and cuBLAS sides of the switch
    for (bool bias : {false, true}) {
      for (bool accumulate : {false, true}) {
        INFO("m=" << m << " bias=" << bias << " accumulate=" << accumulate);
        const Problem p(DType::kF16, m, 11, 0, bias, accumulate, 3);
        CHECK(testing::CompareY(p, Run(*gemm, p), p.Reference(false), 0.0f, 0.0f) == "");
      }
    }
  }
  const Problem p(DType::kF32, 3, 5, 4, true, true, 5);
  DeviceArray<float> y(p.y);
  CHECK(gemm->Gemm(nullptr, 4, nullptr, DType::kF32, 4, nullptr, y.get(), 5, 0, 5, 4, false,
                   nullptr, 0)
            .ok());
  CHECK(gemm->Gemm(nullptr, 4, nullptr, DType::kF32, 4, nullptr, y.get(), 5, 3, 0, 4, false,
                   nullptr, 0)
            .ok());
  const std::vector<float> after = y.Download();
  CHECK(std::memcmp(after.data(), p.y.data(), after.size() * sizeof(float)) == 0);
}

TEST_CASE("Gemm rejects bad arguments", "[cuda][gemm]") {
  const std::unique_ptr<CublasGemm> gemm = MakeGemm(kGemvMaxRows);
  const DeviceArray<float> buf(std::vector<float>(4096, 0.0f));
  float* x = buf.get();
  float* w = x + 1024;
  float* y = x + 2048;
  float* workspace = x + 3072;
  const size_t ws = GemmWorkspaceBytes(DType::kBF16, 16, 8);
  auto gemm_call = [&](const float* px, int64_t ldx, const void* pw, DType dtype, int64_t ldw,
                       float* py, int64_t ldy, int64_t m, int64_t n, int64_t k, void* pworkspace,
                       size_t workspace_bytes) {
    return gemm->Gemm(px, ldx, pw, dtype, ldw, nullptr, py, ldy, m, n, k, false, pworkspace,
                      workspace_bytes);
  };
  const auto invalid = [](const GemmStatus& s) {
    return s.cuda == cudaErrorInvalidValue && s.cublas == CUBLAS_STATUS_SUCCESS;
  };
  CHECK(invalid(gemm_call(x, 8, w, DType::kF32, 8, y, 8, -1, 8, 8, nullptr, 0)));
  CHECK(invalid(gemm_call(x, 8, w, DType::kF32, 8, y, 8, 2, -1, 8, nullptr, 0)));
  CHECK(invalid(gemm_call(x, 8, w, DType::kF32, 8, y, 8, 2, 8, -1, nullptr, 0)));
  CHECK(invalid(gemm_call(x, 7, w, DType::kF32, 8, y, 8, 2, 8, 8, nullptr, 0)));
  CHECK(invalid(gemm_call(x, 8, w, DType::kF32, 7, y, 8, 2, 8, 8, nullptr, 0)));
  CHECK(invalid(gemm_call(x, 8, w, DType::kF32, 8, y, 7, 2, 8, 8, nullptr, 0)));
  CHECK(invalid(gemm_call(x, 8, w, DType::kI32, 8, y, 8, 2, 8, 8, nullptr, 0)));
  CHECK(invalid(gemm_call(x, 8, w, DType::kF32, 8, nullptr, 8, 2, 8, 8, nullptr, 0)));
  CHECK(invalid(gemm_call(nullptr, 8, w, DType::kF32, 8, y, 8, 2, 8, 8, nullptr, 0)));
  CHECK(invalid(gemm_call(x, 8, nullptr, DType::kF32, 8, y, 8, 2, 8, 8, nullptr, 0)));
  // The cuBLAS path with BF16 weights needs the cast workspace.
  CHECK(ws >= 16 * 8 * 2);
  CHECK(invalid(gemm_call(x, 8, w, DType::kBF16, 8, y, 8, 16, 8, 8, workspace, ws - 1)));
  CHECK(invalid(gemm_call(x, 8, w, DType::kBF16, 8, y, 8, 16, 8, 8, nullptr, ws)));
  CHECK(gemm_call(x, 8, w, DType::kBF16, 8, y, 8, 16, 8, 8, workspace, ws).ok());
  // ... the GEMV path and F32 weights do not.
  CHECK(GemmWorkspaceBytes(DType::kF32, 16, 8) == 0);
  CHECK(gemm_call(x, 8, w, DType::kBF16, 8, y, 8, 2, 8, 8, nullptr, 0).ok());
  CHECK(gemm_call(x, 8, w, DType::kF32, 8, y, 8, 16, 8, 8, nullptr, 0).ok());
  // Sizes beyond cuBLAS's int are refused before anything is read.
  const int64_t huge = int64_t{INT_MAX} + 1;
  CHECK(invalid(gemm_call(x, 1, w, DType::kF32, 1, y, huge, 16, huge, 1, nullptr, 0)));
  CHECK(invalid(gemm_call(x, huge, w, DType::kF32, 1, y, 8, 16, 8, 1, nullptr, 0)));
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
}

TEST_CASE("CublasGemm::Create validates its options", "[cuda][gemm]") {
  std::unique_ptr<CublasGemm> gemm;
  CublasGemmOptions options;
  options.gemv_max_rows = kGemvMaxRows + 1;
  GemmStatus s = CublasGemm::Create(options, nullptr, &gemm);
  CHECK(s.cuda == cudaErrorInvalidValue);
  CHECK(gemm == nullptr);
  options.gemv_max_rows = -1;
  CHECK(CublasGemm::Create(options, nullptr, &gemm).cuda == cudaErrorInvalidValue);
  CHECK(CublasGemm::Create(CublasGemmOptions(), nullptr, nullptr).cuda == cudaErrorInvalidValue);
  options.gemv_max_rows = 0;
  options.cublas_workspace_bytes = 0;  // cuBLAS without a workspace still works
  s = CublasGemm::Create(options, nullptr, &gemm);
  REQUIRE(s.ok());
  const Problem p(DType::kF32, 10, 3, 5, false, false, 9);
  CHECK(testing::CompareY(p, Run(*gemm, p), p.Reference(false), kTolerance, kTolerance) == "");
}

TEST_CASE("GemmStatus names the failing step and status", "[cuda][gemm]") {
  CHECK(std::string(CublasStatusName(CUBLAS_STATUS_INVALID_VALUE)) ==
        "CUBLAS_STATUS_INVALID_VALUE");
  CHECK(std::string(CublasStatusName(CUBLAS_STATUS_NOT_SUPPORTED)) ==
        "CUBLAS_STATUS_NOT_SUPPORTED");
  CHECK(std::string(CublasStatusName(static_cast<cublasStatus_t>(12345))) ==
        "CUBLAS_STATUS_UNKNOWN");
  GemmStatus s;
  CHECK(s.ok());
  CHECK(s.Message() == "ok");
  s.cublas = CUBLAS_STATUS_NOT_SUPPORTED;
  s.where = "cublasGemmEx";
  CHECK(!s.ok());
  CHECK(s.Message() == "cublasGemmEx: CUBLAS_STATUS_NOT_SUPPORTED");
  GemmStatus c;
  c.cuda = cudaErrorInvalidValue;
  c.where = "Gemm arguments";
  CHECK(c.Message() == std::string("Gemm arguments: ") + cudaGetErrorString(cudaErrorInvalidValue));
}

}  // namespace
}  // namespace kestrel::cuda
