// The emulated cublasGemmEx against a naive column-major loop written here:
// both transposes, F32/F16/BF16 inputs, padded leading dimensions, alpha and
// beta (beta = 0 never reads C); and cuBLAS's argument errors.
#include <cublas_v2.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/dtype.h"

namespace {

using kestrel::kernels::Bf16ToF32;
using kestrel::kernels::F16ToF32;
using kestrel::kernels::F32ToBf16;
using kestrel::kernels::F32ToF16;

// A column-major matrix of `rows` x `cols` (leading dimension ld) stored as
// `type`, with NaN (or its bits) in the padding rows.
struct Matrix {
  cudaDataType type;
  int rows, cols, ld;
  std::vector<float> f32;      // CUDA_R_32F
  std::vector<uint16_t> bits;  // CUDA_R_16F / CUDA_R_16BF

  Matrix(cudaDataType t, int r, int c, int pad, std::mt19937& rng)
      : type(t), rows(r), cols(c), ld(r + pad) {
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    const size_t size = static_cast<size_t>(ld) * static_cast<size_t>(c > 0 ? c : 1);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> values(size, nan);
    for (int j = 0; j < c; ++j) {
      for (int i = 0; i < r; ++i) values[static_cast<size_t>(i + j * ld)] = dist(rng);
    }
    if (t == CUDA_R_32F) {
      f32 = values;
    } else {
      for (float v : values) bits.push_back(t == CUDA_R_16F ? F32ToF16(v) : F32ToBf16(v));
    }
  }
  const void* data() const {
    return type == CUDA_R_32F ? static_cast<const void*>(f32.data()) : bits.data();
  }
  // Element (i, j), widened.
  double at(int i, int j) const {
    const size_t e = static_cast<size_t>(i + j * ld);
    switch (type) {
      case CUDA_R_32F: return f32[e];
      case CUDA_R_16F: return F16ToF32(bits[e]);
      case CUDA_R_16BF: return Bf16ToF32(bits[e]);
    }
    return 0;
  }
};

struct Handle {
  cublasHandle_t h = nullptr;
  Handle() { REQUIRE(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS); }
  ~Handle() { cublasDestroy(h); }
};

TEST_CASE("emulated cublasGemmEx matches a naive column-major loop", "[cublas_emulation]") {
  Handle handle;
  std::mt19937 rng(42);
  struct Shape {
    int m, n, k;
  };
  const Shape shapes[] = {{1, 1, 1}, {3, 5, 7}, {17, 2, 33}, {8, 9, 1}};
  for (cudaDataType type : {CUDA_R_32F, CUDA_R_16F, CUDA_R_16BF}) {
    for (cublasOperation_t ta : {CUBLAS_OP_N, CUBLAS_OP_T}) {
      for (cublasOperation_t tb : {CUBLAS_OP_N, CUBLAS_OP_T}) {
        for (const Shape& s : shapes) {
          for (float beta : {0.0f, 1.0f, -0.5f}) {
            const float alpha = beta == 0.0f ? 1.0f : 1.5f;
            INFO("type=" << type << " transa=" << ta << " transb=" << tb << " m=" << s.m
                         << " n=" << s.n << " k=" << s.k << " beta=" << beta);
            // Stored shapes: A is m x k (N) or k x m (T); B is k x n or n x k.
            const Matrix a = ta == CUBLAS_OP_N ? Matrix(type, s.m, s.k, 2, rng)
                                               : Matrix(type, s.k, s.m, 3, rng);
            const Matrix b = tb == CUBLAS_OP_N ? Matrix(type, s.k, s.n, 1, rng)
                                               : Matrix(type, s.n, s.k, 4, rng);
            Matrix c(CUDA_R_32F, s.m, s.n, 2, rng);
            if (beta == 0.0f) {  // C must not be read: fill it with NaN
              for (float& v : c.f32) v = std::numeric_limits<float>::quiet_NaN();
            }
            std::vector<float> want = c.f32;
            for (int j = 0; j < s.n; ++j) {
              for (int i = 0; i < s.m; ++i) {
                double acc = 0;
                for (int p = 0; p < s.k; ++p) {
                  const double av = ta == CUBLAS_OP_N ? a.at(i, p) : a.at(p, i);
                  const double bv = tb == CUBLAS_OP_N ? b.at(p, j) : b.at(j, p);
                  acc += av * bv;
                }
                float& w = want[static_cast<size_t>(i + j * c.ld)];
                w = static_cast<float>(alpha * acc + (beta == 0.0f ? 0.0 : beta * w));
              }
            }
            REQUIRE(cublasGemmEx(handle.h, ta, tb, s.m, s.n, s.k, &alpha, a.data(), type, a.ld,
                                 b.data(), type, b.ld, &beta, c.f32.data(), CUDA_R_32F, c.ld,
                                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) ==
                    CUBLAS_STATUS_SUCCESS);
            for (int j = 0; j < s.n; ++j) {
              for (int i = 0; i < c.ld; ++i) {
                const size_t e = static_cast<size_t>(i + j * c.ld);
                INFO("C(" << i << ", " << j << ")");
                if (i >= s.m) {  // padding: untouched
                  REQUIRE((std::isnan(want[e]) ? std::isnan(c.f32[e]) : c.f32[e] == want[e]));
                } else {
                  REQUIRE(std::fabs(c.f32[e] - want[e]) <= 1e-5f * (1 + std::fabs(want[e])));
                }
              }
            }
          }
        }
      }
    }
  }
}

TEST_CASE("emulated cuBLAS validates arguments as cuBLAS does", "[cublas_emulation]") {
  Handle handle;
  std::vector<float> buf(256, 0.0f);
  const float one = 1.0f, zero = 0.0f;
  float* p = buf.data();
  auto gemm = [&](cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, int lda,
                  int ldb, int ldc, cudaDataType at = CUDA_R_32F, cudaDataType bt = CUDA_R_32F,
                  cudaDataType ct = CUDA_R_32F,
                  cublasComputeType_t compute = CUBLAS_COMPUTE_32F) {
    return cublasGemmEx(handle.h, ta, tb, m, n, k, &one, p, at, lda, p, bt, ldb, &zero, p, ct,
                        ldc, compute, CUBLAS_GEMM_DEFAULT);
  };
  const cublasOperation_t N = CUBLAS_OP_N, T = CUBLAS_OP_T;
  CHECK(gemm(N, N, 4, 4, 4, 4, 4, 4) == CUBLAS_STATUS_SUCCESS);
  CHECK(gemm(N, N, -1, 4, 4, 4, 4, 4) == CUBLAS_STATUS_INVALID_VALUE);
  CHECK(gemm(N, N, 4, -1, 4, 4, 4, 4) == CUBLAS_STATUS_INVALID_VALUE);
  CHECK(gemm(N, N, 4, 4, -1, 4, 4, 4) == CUBLAS_STATUS_INVALID_VALUE);
  // lda >= m for N, >= k for T; ldb >= k for N, >= n for T; ldc >= m.
  CHECK(gemm(N, N, 5, 3, 2, 4, 2, 5) == CUBLAS_STATUS_INVALID_VALUE);
  CHECK(gemm(T, N, 5, 3, 2, 2, 2, 5) == CUBLAS_STATUS_SUCCESS);
  CHECK(gemm(T, N, 5, 3, 4, 3, 4, 5) == CUBLAS_STATUS_INVALID_VALUE);
  CHECK(gemm(N, N, 5, 3, 4, 5, 3, 5) == CUBLAS_STATUS_INVALID_VALUE);
  CHECK(gemm(N, T, 5, 3, 4, 5, 3, 5) == CUBLAS_STATUS_SUCCESS);
  CHECK(gemm(N, T, 5, 6, 4, 5, 5, 5) == CUBLAS_STATUS_INVALID_VALUE);
  CHECK(gemm(N, N, 5, 3, 4, 5, 4, 4) == CUBLAS_STATUS_INVALID_VALUE);
  CHECK(gemm(N, N, 0, 0, 0, 0, 0, 0) == CUBLAS_STATUS_INVALID_VALUE);  // ld >= 1
  CHECK(gemm(N, N, 0, 0, 0, 1, 1, 1) == CUBLAS_STATUS_SUCCESS);
  CHECK(gemm(static_cast<cublasOperation_t>(7), N, 2, 2, 2, 2, 2, 2) ==
        CUBLAS_STATUS_INVALID_VALUE);
  // Type combinations outside the supported list.
  CHECK(gemm(N, N, 2, 2, 2, 2, 2, 2, CUDA_R_16BF, CUDA_R_16F) == CUBLAS_STATUS_NOT_SUPPORTED);
  CHECK(gemm(N, N, 2, 2, 2, 2, 2, 2, CUDA_R_16BF, CUDA_R_16BF, CUDA_R_16BF) ==
        CUBLAS_STATUS_NOT_SUPPORTED);
  CHECK(gemm(N, N, 2, 2, 2, 2, 2, 2, CUDA_R_16F, CUDA_R_16F, CUDA_R_32F,
             CUBLAS_COMPUTE_32F_FAST_TF32) == CUBLAS_STATUS_NOT_SUPPORTED);
  CHECK(gemm(N, N, 2, 2, 2, 2, 2, 2, CUDA_R_32F, CUDA_R_32F, CUDA_R_32F,
             CUBLAS_COMPUTE_32F_PEDANTIC) == CUBLAS_STATUS_SUCCESS);
  CHECK(cublasGemmEx(handle.h, N, N, 2, 2, 2, nullptr, p, CUDA_R_32F, 2, p, CUDA_R_32F, 2, &zero,
                     p, CUDA_R_32F, 2, CUBLAS_COMPUTE_32F,
                     CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_INVALID_VALUE);
  CHECK(cublasGemmEx(nullptr, N, N, 2, 2, 2, &one, p, CUDA_R_32F, 2, p, CUDA_R_32F, 2, &zero, p,
                     CUDA_R_32F, 2, CUBLAS_COMPUTE_32F,
                     CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_NOT_INITIALIZED);
  // Handle functions.
  CHECK(cublasCreate(nullptr) == CUBLAS_STATUS_INVALID_VALUE);
  CHECK(cublasDestroy(nullptr) == CUBLAS_STATUS_NOT_INITIALIZED);
  CHECK(cublasSetStream(nullptr, nullptr) == CUBLAS_STATUS_NOT_INITIALIZED);
  CHECK(cublasSetMathMode(nullptr, CUBLAS_PEDANTIC_MATH) == CUBLAS_STATUS_NOT_INITIALIZED);
  CHECK(cublasSetMathMode(handle.h, CUBLAS_PEDANTIC_MATH) == CUBLAS_STATUS_SUCCESS);
  CHECK(cublasSetWorkspace(handle.h, nullptr, 0) == CUBLAS_STATUS_SUCCESS);
  CHECK(cublasSetWorkspace(handle.h, nullptr, 1024) == CUBLAS_STATUS_INVALID_VALUE);
  alignas(256) static unsigned char workspace[1024];
  CHECK(cublasSetWorkspace(handle.h, workspace, sizeof workspace) == CUBLAS_STATUS_SUCCESS);
  CHECK(cublasSetWorkspace(handle.h, workspace + 16, 512) == CUBLAS_STATUS_INVALID_VALUE);
}

}  // namespace
