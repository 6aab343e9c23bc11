// compressed-tensors quantization_config parsing (see quant_config.h).
#include "model/quant_config.h"

#include <regex>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace kestrel::model {
namespace {

using json = nlohmann::json;

absl::Status Unsupported(absl::string_view field, absl::string_view supported,
                         const json& value) {
  return absl::InvalidArgumentError(absl::StrCat("quantization_config.", field,
                                                 " is not supported (supported: ", supported,
                                                 "), got ", value.dump()));
}

bool IsNullOrMissing(const json& obj, const char* field) {
  auto it = obj.find(field);
  return it == obj.end() || it->is_null();
}

// `field` of `obj` must equal `want` (a JSON value); a missing field takes
// `fallback` when given, else is an error.
absl::Status Expect(const json& obj, absl::string_view path, const char* field, const json& want,
                    absl::string_view supported, const json* fallback = nullptr) {
  auto it = obj.find(field);
  const std::string name = absl::StrCat(path, ".", field);
  if (it == obj.end() || it->is_null()) {
    if (fallback != nullptr && *fallback == want) return absl::OkStatus();
    if (fallback != nullptr) return Unsupported(name, supported, *fallback);
    return absl::InvalidArgumentError(absl::StrCat("quantization_config: missing field ", name));
  }
  if (*it != want) return Unsupported(name, supported, *it);
  return absl::OkStatus();
}

// One side (weights or input_activations) of a scheme: 8-bit symmetric int
// with the given strategy and dynamic flag; no groups, blocks or act-order.
absl::Status CheckArgs(const json& group, absl::string_view group_path, const char* side,
                       const char* strategy, bool dynamic) {
  const std::string path = absl::StrCat(group_path, ".", side);
  auto it = group.find(side);
  if (it == group.end() || it->is_null()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "quantization_config.", path,
        " is missing or null: only W8A8 int8 is supported (int8 weights per channel, int8 "
        "activations per token, dynamic)"));
  }
  if (!it->is_object()) return Unsupported(path, "an object", *it);
  const json& a = *it;
  const json false_value = false, true_value = true, int_value = "int";
  RETURN_IF_ERROR(Expect(a, path, "num_bits", 8, "8"));
  RETURN_IF_ERROR(Expect(a, path, "type", "int", "int", &int_value));
  RETURN_IF_ERROR(Expect(a, path, "symmetric", true, "true", &true_value));
  RETURN_IF_ERROR(Expect(a, path, "strategy", strategy, strategy));
  RETURN_IF_ERROR(Expect(a, path, "dynamic", dynamic, dynamic ? "true" : "false", &false_value));
  for (const char* field : {"group_size", "block_structure"}) {
    if (!IsNullOrMissing(a, field)) {
      return Unsupported(absl::StrCat(path, ".", field), "null", a[field]);
    }
  }
  if (auto ao = a.find("actorder"); ao != a.end() && !ao->is_null() && *ao != false) {
    return Unsupported(absl::StrCat(path, ".actorder"), "null", *ao);
  }
  return absl::OkStatus();
}

bool MatchesIgnore(const std::string& entry, std::string_view module) {
  if (absl::StartsWith(entry, "re:")) {
    // Validated by the parser, so this cannot throw.
    const std::regex re(entry.substr(3));
    return std::regex_search(module.begin(), module.end(), re,
                             std::regex_constants::match_continuous);
  }
  return entry == module;
}

}  // namespace

bool CheckpointQuantization::Quantizes(std::string_view module) const {
  if (!int8) return false;
  for (const std::string& entry : ignore) {
    if (MatchesIgnore(entry, module)) return false;
  }
  return true;
}

absl::StatusOr<CheckpointQuantization> ParseQuantizationConfig(std::string_view json_text) {
  const json q = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (q.is_discarded() || !q.is_object()) {
    return absl::InvalidArgumentError("quantization_config must be an object");
  }
  CheckpointQuantization out;
  if (auto qm = q.find("quant_method"); qm == q.end() || *qm != "compressed-tensors") {
    return Unsupported("quant_method", "compressed-tensors", qm == q.end() ? json() : *qm);
  }
  // "int-quantized" and "naive-quantized" both store int8 weights as I8.
  auto format_ok = [](const json& f) { return f == "int-quantized" || f == "naive-quantized"; };
  auto fmt = q.find("format");
  if (fmt == q.end() || !format_ok(*fmt)) {
    return Unsupported("format", "int-quantized, naive-quantized",
                       fmt == q.end() ? json() : *fmt);
  }
  if (auto st = q.find("quantization_status");
      st != q.end() && !st->is_null() && *st != "compressed") {
    return Unsupported("quantization_status", "compressed", *st);
  }
  for (const char* field : {"kv_cache_scheme", "transform_config"}) {
    if (!IsNullOrMissing(q, field)) return Unsupported(field, "null", q[field]);
  }
  if (auto sp = q.find("sparsity_config");
      sp != q.end() && !sp->is_null() && !(sp->is_object() && sp->empty())) {
    return Unsupported("sparsity_config", "null or {}", *sp);
  }

  auto groups = q.find("config_groups");
  if (groups == q.end() || !groups->is_object() || groups->size() != 1) {
    return Unsupported("config_groups", "an object with one group",
                       groups == q.end() ? json() : *groups);
  }
  const std::string name = groups->begin().key();
  const json& g = groups->begin().value();
  const std::string path = absl::StrCat("config_groups.", name);
  if (!g.is_object()) return Unsupported(path, "an object", g);
  RETURN_IF_ERROR(Expect(g, path, "targets", json::array({"Linear"}), "[\"Linear\"]"));
  if (auto f = g.find("format"); f != g.end() && !f->is_null() && !format_ok(*f)) {
    return Unsupported(absl::StrCat(path, ".format"), "int-quantized, naive-quantized", *f);
  }
  RETURN_IF_ERROR(CheckArgs(g, path, "weights", "channel", /*dynamic=*/false));
  RETURN_IF_ERROR(CheckArgs(g, path, "input_activations", "token", /*dynamic=*/true));
  if (!IsNullOrMissing(g, "output_activations")) {
    return Unsupported(absl::StrCat(path, ".output_activations"), "null", g["output_activations"]);
  }

  if (auto ig = q.find("ignore"); ig != q.end() && !ig->is_null()) {
    if (!ig->is_array()) return Unsupported("ignore", "a list of module names", *ig);
    for (const json& e : *ig) {
      if (!e.is_string()) return Unsupported("ignore", "a list of module names", *ig);
      std::string entry = e.get<std::string>();
      if (absl::StartsWith(entry, "re:")) {
        try {
          std::regex re(entry.substr(3));
        } catch (const std::regex_error& err) {
          return absl::InvalidArgumentError(absl::StrCat(
              "quantization_config.ignore: ", e.dump(), " is not a valid pattern: ", err.what()));
        }
      }
      out.ignore.push_back(std::move(entry));
    }
  }
  out.int8 = true;
  return out;
}

}  // namespace kestrel::model
