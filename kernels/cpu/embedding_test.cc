// Embedding gather from F32/BF16/F16 tables and id validation.
#include "kernels/cpu/embedding.h"

#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/test_util.h"

namespace kestrel::kernels::cpu {
namespace {

TEST_CASE("EmbeddingGather for every table dtype", "[embedding]") {
  const int64_t vocab = 19, dim = 7, stride = 9;
  const std::vector<float> table = testing::RandomVector(static_cast<size_t>(vocab * dim), 1);
  const std::vector<uint16_t> bf = testing::ToBf16(table), hf = testing::ToF16(table);
  const std::vector<int32_t> ids = {0, 18, 5, 5};
  for (DType t : {DType::kF32, DType::kBF16, DType::kF16}) {
    const void* data = t == DType::kF32   ? static_cast<const void*>(table.data())
                       : t == DType::kBF16 ? static_cast<const void*>(bf.data())
                                           : static_cast<const void*>(hf.data());
    std::vector<float> out(4 * stride, -7.0f);
    REQUIRE(EmbeddingGather(data, t, vocab, dim, ids.data(), 4, out.data(), stride).ok());
    for (int64_t i = 0; i < 4; ++i) {
      for (int64_t j = 0; j < dim; ++j) {
        const int64_t src = ids[i] * dim + j;
        const float want = t == DType::kF32   ? table[src]
                           : t == DType::kBF16 ? Bf16ToF32(bf[src])
                                               : F16ToF32(hf[src]);
        REQUIRE(out[i * stride + j] == want);
      }
      CHECK(out[i * stride + dim] == -7.0f);  // row padding untouched
    }
  }
}

TEST_CASE("EmbeddingGather rejects ids outside the vocabulary", "[embedding]") {
  const std::vector<float> table(10 * 4, 1.0f);
  std::vector<float> out(8, 0.0f);
  for (int32_t bad : {-1, 10, 1 << 30}) {
    const std::vector<int32_t> ids = {2, bad};
    const absl::Status s = EmbeddingGather(table.data(), DType::kF32, 10, 4, ids.data(), 2,
                                           out.data(), 4);
    CHECK(absl::IsInvalidArgument(s));
    CHECK(s.message().find("ids[1]") != std::string::npos);
    CHECK(out[0] == 0.0f);  // nothing written
  }
  const std::vector<int32_t> ids = {0};
  CHECK(absl::IsInvalidArgument(EmbeddingGather(table.data(), static_cast<DType>(9), 10, 4,
                                                ids.data(), 1, out.data(), 4)));
  CHECK(absl::IsInvalidArgument(
      EmbeddingGather(table.data(), DType::kF32, 10, 4, ids.data(), 1, out.data(), 3)));
}

}  // namespace
}  // namespace kestrel::kernels::cpu
