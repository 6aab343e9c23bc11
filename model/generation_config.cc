#include "model/generation_config.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace kestrel::model {
namespace {

using json = nlohmann::json;

absl::Status FieldError(const std::string& field, const std::string& rule, const json& value) {
  return absl::InvalidArgumentError(
      absl::StrCat("generation_config.json: ", field, " must be ", rule, ", got ", value.dump()));
}

// A number field in [lo, hi] (lo excluded when `open_low`); unset when
// absent or null.
absl::StatusOr<std::optional<float>> Number(const json& obj, const std::string& field, double lo,
                                            double hi, bool open_low) {
  const auto it = obj.find(field);
  if (it == obj.end() || it->is_null()) return std::optional<float>();
  const std::string rule = absl::StrCat("a number in ", open_low ? "(" : "[", lo, ", ", hi, "]");
  if (!it->is_number()) return FieldError(field, rule, *it);
  const double v = it->get<double>();
  if (!std::isfinite(v) || v > hi || (open_low ? v <= lo : v < lo)) return FieldError(field, rule, *it);
  return std::optional<float>(static_cast<float>(v));
}

}  // namespace

SamplingParams GenerationConfig::SamplingDefaults() const {
  SamplingParams params;
  if (temperature) params.temperature = *temperature;
  if (top_k) params.top_k = *top_k;
  if (top_p) params.top_p = *top_p;
  if (min_p) params.min_p = *min_p;
  if (repetition_penalty) params.repetition_penalty = *repetition_penalty;
  return params;
}

std::string GenerationConfig::DescribeSamplingDefaults() const {
  std::vector<std::string> parts;
  if (temperature) parts.push_back(absl::StrCat("temperature=", *temperature));
  if (top_k) parts.push_back(absl::StrCat("top_k=", *top_k));
  if (top_p) parts.push_back(absl::StrCat("top_p=", *top_p));
  if (min_p) parts.push_back(absl::StrCat("min_p=", *min_p));
  if (repetition_penalty) parts.push_back(absl::StrCat("repetition_penalty=", *repetition_penalty));
  return parts.empty() ? "none" : absl::StrJoin(parts, " ");
}

absl::StatusOr<GenerationConfig> GenerationConfig::Parse(std::string_view json_text,
                                                         int64_t vocab_size) {
  const json obj = json::parse(json_text, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (obj.is_discarded() || !obj.is_object()) {
    return absl::InvalidArgumentError("generation_config.json: not a JSON object");
  }
  GenerationConfig c;
  if (const auto eos = obj.find("eos_token_id"); eos != obj.end() && !eos->is_null()) {
    const std::string rule = absl::StrCat("a token id in [0, ", vocab_size, ") or a list of them");
    const std::vector<json> ids = eos->is_array() ? eos->get<std::vector<json>>() : std::vector<json>{*eos};
    for (const json& id : ids) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= vocab_size) {
        return FieldError("eos_token_id", rule, *eos);
      }
      c.eos_token_ids.push_back(id.get<int64_t>());
    }
  }
  ASSIGN_OR_RETURN(c.temperature, Number(obj, "temperature", 0, 100, /*open_low=*/false));
  ASSIGN_OR_RETURN(c.top_p, Number(obj, "top_p", 0, 1, /*open_low=*/true));
  ASSIGN_OR_RETURN(c.min_p, Number(obj, "min_p", 0, 1, /*open_low=*/false));
  ASSIGN_OR_RETURN(c.repetition_penalty, Number(obj, "repetition_penalty", 0, 10, /*open_low=*/true));
  if (const auto top_k = obj.find("top_k"); top_k != obj.end() && !top_k->is_null()) {
    if (!top_k->is_number_integer() || top_k->get<int64_t>() < -1 || top_k->get<int64_t>() > INT32_MAX) {
      return FieldError("top_k", "an integer >= -1", *top_k);
    }
    // -1 and 0 both disable it.
    c.top_k = static_cast<int32_t>(std::max<int64_t>(0, top_k->get<int64_t>()));
  }
  return c;
}

absl::StatusOr<GenerationConfig> GenerationConfig::LoadFromDir(const std::filesystem::path& dir,
                                                               int64_t vocab_size) {
  const std::filesystem::path path = dir / "generation_config.json";
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return GenerationConfig();
  ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
  absl::StatusOr<GenerationConfig> config = Parse(text, vocab_size);
  if (!config.ok()) {
    return absl::Status(config.status().code(), absl::StrCat(path.string(), ": ", config.status().message()));
  }
  return config;
}

}  // namespace kestrel::model
