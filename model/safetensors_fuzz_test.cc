// Bounded-time fuzz driver for safetensors_fuzz.cc: mutates seed files
// (valid checkpoints and near misses) for KESTREL_FUZZ_SECONDS seconds
// (default 3) and feeds them to LLVMFuzzerTestOneInput. Run under
// --config=asan; the 60 s run is documented in docs/safetensors.md.
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "model/safetensors.h"
#include "model/safetensors_writer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace kestrel::model {
namespace {

std::vector<std::string> Seeds() {
  std::vector<std::string> seeds;
  seeds.push_back(SerializeSafetensors({
      {"a.weight", kernels::DType::kF32, {2, 3}, std::string(24, '\1')},
      {"b.bias", kernels::DType::kBF16, {3}, std::string(6, '\2')},
      {"c", kernels::DType::kF16, {1, 1, 2}, std::string(4, '\3')},
      {"empty", kernels::DType::kI64, {0, 4}, ""},
  }));
  seeds.push_back(SerializeSafetensors({}));
  seeds.push_back(SerializeSafetensors({{"x", kernels::DType::kU8, {5}, "hello"}}));
  std::string raw_header = R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  std::string s(8, '\0');
  s[0] = static_cast<char>(raw_header.size());
  seeds.push_back(s + raw_header + "abcd");
  return seeds;
}

// Rewrites the length prefix to match the current header when possible, so
// most mutants get past the first check and exercise the JSON validation.
void FixLength(std::string& s, uint64_t header_len) {
  if (s.size() < 8) return;
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((header_len >> (8 * i)) & 0xff);
}

std::string Mutate(const std::string& seed, std::mt19937_64& rng) {
  static const char kTokens[] = "{}[]\",:-0123456789eE. \\u";
  static const std::vector<std::string> kWords = {
      "\"F32\"", "\"BF16\"", "\"F16\"", "\"I64\"", "\"XX\"", "null", "true", "[]", "{}",
      "18446744073709551615", "9223372036854775807", "-1", "4294967296", "0", "1e308",
      "\"data_offsets\"", "\"shape\"", "\"dtype\"", "\"__metadata__\"", "[0,0]", "[1,2,3]"};
  std::string s = seed;
  uint64_t header_len = 0;
  if (s.size() >= 8) {
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(s[i]);
  }
  const int rounds = rng() % 2 ? 1 : 1 + static_cast<int>(rng() % 4);
  for (int r = 0; r < rounds; ++r) {
    const size_t pos = s.empty() ? 0 : rng() % s.size();
    switch (rng() % 11) {
      case 0:
        if (!s.empty()) s[pos] ^= static_cast<char>(1u << (rng() % 8));
        break;
      case 1:
        if (!s.empty()) s[pos] = kTokens[rng() % (sizeof(kTokens) - 1)];
        break;
      case 2: {  // insert a JSON-ish word inside the header
        const std::string& w = kWords[rng() % kWords.size()];
        s.insert(pos, w);
        if (pos >= 8 && pos <= 8 + header_len) header_len += w.size();
        break;
      }
      case 3: {  // delete a range
        const size_t len = std::min<size_t>(s.size() - pos, 1 + rng() % 16);
        s.erase(pos, len);
        if (pos >= 8 && pos + len <= 8 + header_len) header_len -= len;
        break;
      }
      case 4:  // truncate
        s.resize(pos);
        break;
      case 5:  // random length prefix
        FixLength(s, rng() % 2 ? rng() : rng() % (s.size() + 16));
        continue;
      case 6:  // duplicate a range
        if (!s.empty()) s.insert(pos, s.substr(rng() % s.size(), 1 + rng() % 32));
        break;
      case 7:
        s.push_back(static_cast<char>(rng()));
        break;
      case 8:
      case 9: {  // structure-aware: swap a number in the header for another
        static const char* kNumbers[] = {"0", "1", "2", "3", "4", "6", "8", "12", "16", "24",
                                         "31", "32", "33", "64", "255", "4096", "65536",
                                         "4294967295", "4294967296", "9223372036854775807",
                                         "18446744073709551615", "18446744073709551616"};
        size_t d = s.find_first_of("0123456789", std::max<size_t>(pos, 8));
        if (d == std::string::npos || d >= 8 + header_len) break;
        size_t e = s.find_first_not_of("0123456789", d);
        if (e == std::string::npos) e = s.size();
        const std::string num = kNumbers[rng() % (sizeof(kNumbers) / sizeof(kNumbers[0]))];
        s.replace(d, e - d, num);
        header_len = header_len + num.size() - (e - d);
        break;
      }
      case 10: {  // structure-aware: change a dtype
        static const char* kDtypes[] = {"F32", "F16", "BF16", "I64", "U8", "BOOL", "F8_E4M3", "F64"};
        const size_t at = s.find("\"dtype\":\"", std::max<size_t>(pos, 8));
        if (at == std::string::npos) break;
        const size_t v = at + 9, q = s.find('"', v);
        if (q == std::string::npos || q >= 8 + header_len) break;
        const std::string dt = kDtypes[rng() % 8];
        s.replace(v, q - v, dt);
        header_len = header_len + dt.size() - (q - v);
        break;
      }
    }
    if (rng() % 4 != 0) FixLength(s, header_len);
  }
  return s;
}

TEST_CASE("safetensors header parser survives mutated inputs", "[fuzz]") {
  double seconds = 3.0;
  if (const char* env = std::getenv("KESTREL_FUZZ_SECONDS")) seconds = std::atof(env);
  std::mt19937_64 rng(0x5afe7e45);
  if (const char* env = std::getenv("KESTREL_FUZZ_SEED")) rng.seed(std::strtoull(env, nullptr, 10));
  const std::vector<std::string> seeds = Seeds();
  // Corpus grows with mutants so mutations compound, bounded in size.
  std::vector<std::string> corpus = seeds;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  uint64_t runs = 0, accepted = 0;
  for (const std::string& s : seeds) {
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  }
  while (std::chrono::steady_clock::now() < deadline) {
    for (int i = 0; i < 256; ++i, ++runs) {
      const std::string& parent =
          rng() % 2 ? seeds[rng() % seeds.size()] : corpus[rng() % corpus.size()];
      std::string m = Mutate(parent, rng);
      if (m.size() > 4096) m.resize(4096);
      LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(m.data()), m.size());
      // Inputs that pass every check are the interesting parents (a crude
      // stand-in for coverage feedback); the count shows the driver is not
      // just producing garbage.
      const bool ok = ParseSafetensorsHeader(m, m.size()).ok();
      accepted += ok;
      if (ok || rng() % 256 == 0) {
        if (corpus.size() < 512) {
          corpus.push_back(std::move(m));
        } else {
          corpus[seeds.size() + rng() % (corpus.size() - seeds.size())] = std::move(m);
        }
      }
    }
  }
  WARN("safetensors fuzz: " << runs << " inputs in " << seconds << " s, " << accepted
                              << " passed every check");
  CHECK(runs > 0);
  CHECK(accepted > 0);
}

}  // namespace
}  // namespace kestrel::model
