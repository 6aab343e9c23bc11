// libFuzzer-style target over the safetensors header parser. Built into the
// bounded-time driver test (safetensors_fuzz_test.cc) because the project's
// compiler (GCC) has no libFuzzer; the same file links unchanged against
// clang's -fsanitize=fuzzer. See docs/safetensors.md for the 60 s run.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view file(reinterpret_cast<const char*>(data), size);
  auto header = kestrel::model::ParseSafetensorsHeader(file, size);
  if (!header.ok()) return 0;
  // Whatever the parser accepts must be safe to read: touch every byte of
  // every tensor so ASan flags any range the checks let through, and
  // re-check the documented invariants.
  uint64_t prev_end = 0;
  unsigned sum = 0;
  for (const auto& t : header->tensors) {
    if (t.begin > t.end || header->data_offset + t.end > size) std::abort();
    if (t.begin != t.end) {
      if (t.begin < prev_end) std::abort();
      prev_end = t.end;
    }
    for (uint64_t i = t.begin; i < t.end; ++i) sum += data[header->data_offset + i];
  }
  volatile unsigned sink = sum;
  (void)sink;
  return 0;
}
