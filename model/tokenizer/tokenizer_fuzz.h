// The fuzz target over the tokenizer.json loader, the encoder, decoder and
// incremental detokenizer, plus the seeds the bounded driver mutates.
// Build it with libFuzzer (clang -fsanitize=fuzzer) or run it under the
// driver in tokenizer_fuzz_main.cc; see docs/tokenizer.md.
#ifndef KESTREL_MODEL_TOKENIZER_TOKENIZER_FUZZ_H_
#define KESTREL_MODEL_TOKENIZER_TOKENIZER_FUZZ_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

// Input layout: byte 0 picks the mode (mod 3), the rest is its payload:
//   0: a tokenizer.json; when it loads, probe texts are encoded and decoded
//   1: text encoded by two built-in tokenizers (byte-level with the Llama 3
//      split regex, SentencePiece-style with byte fallback); the same bytes
//      are also decoded as ids. Streaming must equal whole decoding.
//   2: a tokenizer_config.json for the SentencePiece-style tokenizer
// A violated invariant aborts, so the fuzzer reports it as a crash.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace kestrel::tokenizer {

// Seed inputs (mode byte included) for the mutation driver.
std::vector<std::string> FuzzSeeds();

}  // namespace kestrel::tokenizer

#endif  // KESTREL_MODEL_TOKENIZER_TOKENIZER_FUZZ_H_
