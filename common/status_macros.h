// Early-return helpers for absl::Status and absl::StatusOr. Debian's Abseil
// (20220623) ships none, so the project has its own.
//
//   RETURN_IF_ERROR(file.Read(&header));
//   ASSIGN_OR_RETURN(Config config, Config::Parse(text));
#ifndef KESTREL_COMMON_STATUS_MACROS_H_
#define KESTREL_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define KESTREL_STATUS_CONCAT_INNER_(a, b) a##b
#define KESTREL_STATUS_CONCAT_(a, b) KESTREL_STATUS_CONCAT_INNER_(a, b)

// Returns the status of `expr` from the enclosing function if it is not OK.
#define RETURN_IF_ERROR(expr)                                         \
  do {                                                                \
    if (::absl::Status kestrel_status_ = (expr); !kestrel_status_.ok()) \
      return kestrel_status_;                                         \
  } while (false)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status,
// otherwise moves the value into `lhs`, which may be a declaration.
#define ASSIGN_OR_RETURN(lhs, rexpr)                                             \
  KESTREL_ASSIGN_OR_RETURN_IMPL_(KESTREL_STATUS_CONCAT_(kestrel_statusor_, __LINE__), \
                                 lhs, rexpr)

#define KESTREL_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                   \
  if (!statusor.ok()) return std::move(statusor).status();   \
  lhs = std::move(statusor).value()

#endif  // KESTREL_COMMON_STATUS_MACROS_H_
