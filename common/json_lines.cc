#include "common/json_lines.h"

#include "nlohmann/json.hpp"

namespace kestrel {

size_t RunJsonLines(std::istream& in, std::ostream& out,
                    const std::function<absl::StatusOr<std::string>(const std::string&)>& process) {
  size_t errors = 0;
  std::string line;
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    absl::StatusOr<std::string> result = process(line);
    if (result.ok()) {
      out << *result << '\n';
    } else {
      ++errors;
      const nlohmann::json error = {{"error", std::string(result.status().message())}};
      out << error.dump(-1, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace)
          << '\n';
    }
    out.flush();
  }
  return errors;
}

}  // namespace kestrel
