// Golden-file agreement with the reference `tokenizers` library: every row of
// the shared golden files, through the same code path as `kestrel-tokenize`,
// plus the incremental detokenizer fed one id at a time on every row.
#include <fstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "model/tokenizer/incremental_detokenizer.h"
#include "model/tokenizer/json_util.h"
#include "model/tokenizer/tokenize_tool.h"
#include "model/tokenizer/tokenizer.h"
#include "testing/shared_data.h"

namespace kestrel::tokenizer {
namespace {

std::vector<Json> ReadRows(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::vector<Json> rows;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    Json row = Json::parse(line, nullptr, false);
    REQUIRE_FALSE(row.is_discarded());
    rows.push_back(std::move(row));
  }
  return rows;
}

std::string Escaped(const Json& value) {
  return value.dump(-1, ' ', true, Json::error_handler_t::replace);
}

void CheckGolden(const std::filesystem::path& dir, const std::filesystem::path& golden) {
  auto tokenizer = Tokenizer::LoadFromDirectory(dir.string(), {});
  REQUIRE(tokenizer.ok());
  const std::vector<Json> rows = ReadRows(golden);
  REQUIRE(rows.size() > 100);
  size_t ids_ok = 0, special_ok = 0, decoded_ok = 0, decoded_rows = 0, stream_ok = 0;
  for (const Json& row : rows) {
    const std::string text = row["text"].get<std::string>();
    Json input = Json::object();
    input["text"] = text;
    auto line = ProcessToolLine(**tokenizer, input.dump(), {});
    if (!line.ok()) {
      FAIL_CHECK("text " << Escaped(row["text"]) << ": " << line.status());
      continue;
    }
    const Json out = Json::parse(*line, nullptr, false);
    REQUIRE(out.is_object());
    if (out["ids"] == row["ids"]) {
      ++ids_ok;
    } else {
      FAIL_CHECK("ids of " << Escaped(row["text"]) << "\n  got  " << out["ids"].dump()
                           << "\n  want " << row["ids"].dump());
    }
    if (out["ids_with_special"] == row["ids_with_special"]) {
      ++special_ok;
    } else {
      FAIL_CHECK("ids_with_special of " << Escaped(row["text"]) << "\n  got  "
                                        << out["ids_with_special"].dump() << "\n  want "
                                        << row["ids_with_special"].dump());
    }
    if (row.contains("decoded")) {
      ++decoded_rows;
      if (out["decoded"] == row["decoded"]) {
        ++decoded_ok;
      } else {
        FAIL_CHECK("decoded of " << Escaped(row["text"]) << "\n  got  " << Escaped(out["decoded"])
                                 << "\n  want " << Escaped(row["decoded"]));
      }
    }
    // Streaming, one id at a time, must equal the whole decode, with and
    // without special tokens.
    const std::vector<int32_t> ids = row["ids_with_special"].get<std::vector<int32_t>>();
    bool stream_row_ok = true;
    for (bool skip : {false, true}) {
      IncrementalDetokenizer detok(tokenizer->get(), skip);
      std::string streamed;
      for (int32_t id : ids) {
        auto delta = detok.Add(id);
        REQUIRE(delta.ok());
        streamed += *delta;
      }
      auto rest = detok.Finish();
      REQUIRE(rest.ok());
      streamed += *rest;
      auto whole = (*tokenizer)->Decode(ids, skip);
      REQUIRE(whole.ok());
      if (streamed != *whole) {
        stream_row_ok = false;
        FAIL_CHECK("streamed decode of " << Escaped(row["text"]) << " (skip=" << skip
                                         << ")\n  got  " << Escaped(Json(streamed))
                                         << "\n  want " << Escaped(Json(*whole)));
      }
    }
    if (stream_row_ok) ++stream_ok;
  }
  WARN(golden.string() << ": rows " << rows.size() << ", ids " << ids_ok << ", ids_with_special "
                       << special_ok << ", decoded " << decoded_ok << "/" << decoded_rows
                       << ", streamed " << stream_ok);
  CHECK(ids_ok == rows.size());
  CHECK(special_ok == rows.size());
  CHECK(decoded_ok == decoded_rows);
  CHECK(stream_ok == rows.size());
}

TEST_CASE("llama3 golden rows all agree") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "tokenizers/llama3");
  CheckGolden(dir, dir / "golden.jsonl");
}

TEST_CASE("mistral v0.1 golden rows all agree") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "tokenizers/mistral_v0_1");
  CheckGolden(dir, dir / "golden.jsonl");
}

TEST_CASE("stories260K golden rows all agree") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  CheckGolden(dir, dir / "golden/tokenizer.jsonl");
}

}  // namespace
}  // namespace kestrel::tokenizer
