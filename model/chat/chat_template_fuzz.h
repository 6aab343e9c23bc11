// The fuzz target over the chat template parser and renderer, plus the
// seeds the bounded driver (chat_template_fuzz_main.cc) mutates. Build it
// with libFuzzer (clang -fsanitize=fuzzer) or run it under the driver; see
// docs/chat-templates.md.
#ifndef KESTREL_MODEL_CHAT_CHAT_TEMPLATE_FUZZ_H_
#define KESTREL_MODEL_CHAT_CHAT_TEMPLATE_FUZZ_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

// Input layout: the template source, optionally followed by a NUL byte and
// a JSON request {"messages": [...], "tools": [...], "add_generation_prompt":
// ..., ...extra}; without one, a built-in conversation with tool calls and
// Unicode content is used. Parsing and rendering may fail, never crash, and
// a render must give the same result twice (a violated invariant aborts).
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace kestrel::chat {

// Seed inputs for the mutation driver.
std::vector<std::string> FuzzSeeds();

}  // namespace kestrel::chat

#endif  // KESTREL_MODEL_CHAT_CHAT_TEMPLATE_FUZZ_H_
