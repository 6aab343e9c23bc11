// Reading a whole file, with errors that name the path.
#ifndef KESTREL_COMMON_FILE_UTIL_H_
#define KESTREL_COMMON_FILE_UTIL_H_

#include <filesystem>
#include <string>

#include "absl/status/statusor.h"

namespace kestrel {

// The file's bytes. NotFoundError "cannot open PATH: REASON" when it cannot
// be opened (missing, a directory, no permission), DataLossError "error
// reading PATH" when reading fails part way.
absl::StatusOr<std::string> ReadFileToString(const std::filesystem::path& path);

}  // namespace kestrel

#endif  // KESTREL_COMMON_FILE_UTIL_H_
