#include "model/tokenizer/tokenizer_fuzz.h"

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "model/tokenizer/incremental_detokenizer.h"
#include "model/tokenizer/json_util.h"
#include "model/tokenizer/tokenizer.h"
#include "model/tokenizer/unicode_util.h"

namespace kestrel::tokenizer {
namespace {

constexpr char kSentencePieceJson[] = R"({
  "version": "1.0",
  "added_tokens": [
    {"id": 0, "content": "<unk>", "special": true, "normalized": false},
    {"id": 1, "content": "<s>", "special": true, "normalized": false},
    {"id": 2, "content": "</s>", "special": true, "normalized": false},
    {"id": 3, "content": "<mask>", "special": true, "normalized": false, "lstrip": true, "rstrip": true},
    {"id": 4, "content": "hey", "special": false, "normalized": true, "single_word": true}],
  "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFKC"},
    {"type": "Prepend", "prepend": "\u2581"},
    {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
  "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}]},
  "post_processor": {"type": "TemplateProcessing", "single": "<s> $A </s>",
    "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]},
                       "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}}},
  "decoder": {"type": "Sequence", "decoders": [
    {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
    {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
  "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": true, "byte_fallback": true,
    "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "<mask>": 3, "hey": 4,
      "<0x00>": 5, "<0x41>": 6, "<0xC3>": 7, "<0xA9>": 8, "<0xE2>": 9, "<0x82>": 10, "<0xAC>": 11,
      "<0xF0>": 12, "<0x9F>": 13, "<0xA6>": 14, "<0x99>": 15,
      "\u2581": 16, "a": 17, "b": 18, "\u2581a": 19, "\u2581ab": 20, "1": 21, "\u2581\u2581": 22},
    "merges": ["\u2581 a", "\u2581a b", "\u2581 \u2581"]}
})";

// A byte-level tokenizer with the Llama 3 split regex: all 256 byte symbols
// plus a few merges, generated once.
std::string ByteLevelJson() {
  Json vocab = Json::object();
  const auto& table = ByteToUnicode();
  for (int b = 0; b < 256; ++b) vocab[table[b]] = b;
  const std::string space = table[' '];
  vocab[space + space] = 256;
  vocab["he"] = 257;
  vocab[space + "he"] = 258;
  Json root = Json::parse(R"({
    "added_tokens": [{"id": 300, "content": "<|eot_id|>", "special": true, "normalized": false}],
    "normalizer": null,
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
      {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
       "behavior": "Isolated", "invert": false},
      {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]},
    "post_processor": {"type": "ByteLevel"},
    "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "ignore_merges": true, "merges": []}})");
  root["model"]["vocab"] = vocab;
  root["model"]["merges"] = Json::array({space + " " + space, "h e", space + " he"});
  return root.dump();
}

[[noreturn]] void Fail(const char* what, std::string_view detail) {
  std::fprintf(stderr, "tokenizer fuzz invariant violated: %s: %.*s\n", what,
               static_cast<int>(detail.size()), detail.data());
  std::abort();
}

// Encodes, decodes and streams. With `check`, aborts if streaming disagrees
// with decoding (only for the built-in tokenizers: a mutated file may use a
// decoder the detokenizer documents as unsupported, e.g. Strip with stop).
void Exercise(const Tokenizer& tok, std::string_view text, bool check) {
  for (bool special : {false, true}) {
    EncodeOptions options;
    options.parse_special_tokens = special;
    options.add_special_tokens = special;
    auto ids = tok.Encode(text, options);
    if (!ids.ok()) {
      if (IsValidUtf8(text)) Fail("encode of valid UTF-8 failed", ids.status().ToString());
      continue;
    }
    for (bool skip : {false, true}) {
      auto whole = tok.Decode(*ids, skip);
      if (!whole.ok()) continue;
      if (check && !IsValidUtf8(*whole)) Fail("decode produced invalid UTF-8", text);
      IncrementalDetokenizer detok(&tok, skip);
      std::string streamed;
      for (int32_t id : *ids) {
        auto delta = detok.Add(id);
        if (!delta.ok()) break;
        streamed += *delta;
      }
      auto rest = detok.Finish();
      if (rest.ok()) streamed += *rest;
      if (check && streamed != *whole) Fail("streamed decode differs from whole decode", text);
    }
  }
}

// Decodes arbitrary ids taken from the input, whole and streamed.
void ExerciseIds(const Tokenizer& tok, std::string_view bytes, bool check) {
  std::vector<int32_t> ids;
  for (size_t i = 0; i + 1 < bytes.size(); i += 2) {
    const int32_t raw = static_cast<uint8_t>(bytes[i]) | (static_cast<uint8_t>(bytes[i + 1]) << 8);
    ids.push_back(raw % (tok.vocab_size() + 2) - 1);  // includes -1 and out-of-range ids
  }
  auto whole = tok.Decode(ids, false);
  if (!whole.ok()) return;
  IncrementalDetokenizer detok(&tok, false);
  std::string streamed;
  for (int32_t id : ids) {
    auto delta = detok.Add(id);
    if (!delta.ok()) return;
    if (check && !IsValidUtf8(*delta)) Fail("streamed delta is not valid UTF-8", *delta);
    streamed += *delta;
  }
  auto rest = detok.Finish();
  if (rest.ok()) streamed += *rest;
  if (check && streamed != *whole) Fail("streamed ids differ from whole decode", *whole);
}

const Tokenizer& Builtin(int which) {
  static const Tokenizer* const sentencepiece = [] {
    auto tok = Tokenizer::FromJson(kSentencePieceJson, "", {.word_cache_capacity = 64});
    if (!tok.ok()) Fail("built-in SentencePiece tokenizer", tok.status().ToString());
    return tok->release();
  }();
  static const Tokenizer* const byte_level = [] {
    auto tok = Tokenizer::FromJson(ByteLevelJson(), "", {.word_cache_capacity = 64});
    if (!tok.ok()) Fail("built-in byte-level tokenizer", tok.status().ToString());
    return tok->release();
  }();
  return which == 0 ? *sentencepiece : *byte_level;
}

}  // namespace

std::vector<std::string> FuzzSeeds() {
  return {
      std::string("\x00", 1) + kSentencePieceJson,
      std::string("\x00", 1) + ByteLevelJson(),
      "\x01Hello world, caf\xC3\xA9 \xF0\x9F\xA6\x99 <s>x</s> hey  <mask> 12345\n\t  ",
      "\x01\xE4\xBD\xA0\xE5\xA5\xBD<|eot_id|> you're   \r\n  x",
      "\x02{\"bos_token\": \"<s>\", \"eos_token\": {\"content\": \"</s>\"}, \"chat_template\": \"x\"}",
  };
}

}  // namespace kestrel::tokenizer

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kestrel::tokenizer;
  if (size == 0) return 0;
  const std::string_view payload(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0: {
      auto tok = Tokenizer::FromJson(payload, "", {.word_cache_capacity = 64});
      if (!tok.ok()) return 0;
      for (std::string_view probe : {"Hello world 123", " caf\xC3\xA9\n\n\xE4\xBD\xA0 <s></s>", ""}) {
        Exercise(**tok, probe, /*check=*/false);
      }
      ExerciseIds(**tok, payload.substr(0, 64), /*check=*/false);
      break;
    }
    case 1:
      for (int which : {0, 1}) {
        Exercise(Builtin(which), payload, /*check=*/true);
        ExerciseIds(Builtin(which), payload, /*check=*/true);
      }
      break;
    case 2: {
      auto tok = Tokenizer::FromJson(kSentencePieceJson, payload, {.word_cache_capacity = 0});
      (void)tok;
      break;
    }
  }
  return 0;
}
