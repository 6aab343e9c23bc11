// ApiKeys (load, digest, constant-time lookup) and the gRPC processor that
// checks `authorization: Bearer <key>` before a call reaches any service.
#include "server/auth.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace kestrel::server {
namespace {

constexpr absl::string_view kHealthPrefix = "/grpc.health.v1.Health/";
constexpr absl::string_view kBearer = "bearer ";

// What a client must send, repeated in every rejection so the fix is obvious.
constexpr absl::string_view kHint = "send the metadata 'authorization: Bearer <api key>'";

absl::Status Unauthenticated(absl::string_view why) {
  return absl::UnauthenticatedError(absl::StrCat(why, "; ", kHint));
}

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

}  // namespace

ApiKeys::Digest ApiKeys::Sha256(absl::string_view text) {
  Digest digest;
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest.data());
  return digest;
}

absl::StatusOr<ApiKeys> ApiKeys::FromLines(const std::vector<std::string>& lines,
                                           const std::string& source) {
  std::vector<Digest> digests;
  std::map<Digest, int> line_of;  // digest -> 1-based line, to name duplicates
  for (size_t i = 0; i < lines.size(); ++i) {
    const int line = static_cast<int>(i) + 1;
    const absl::string_view key = absl::StripAsciiWhitespace(lines[i]);
    if (key.empty() || key.front() == '#') continue;
    // Messages give the position and the problem, never the key itself.
    auto error = [&](absl::string_view problem) {
      return absl::InvalidArgumentError(absl::StrCat(source, " line ", line, ": ", problem));
    };
    for (char c : key) {
      if (absl::ascii_isspace(static_cast<unsigned char>(c))) {
        return error("the key contains whitespace (comments must be on their own line)");
      }
      if (!absl::ascii_isgraph(static_cast<unsigned char>(c))) {
        return error("the key contains a character outside printable ASCII");
      }
    }
    if (key.size() < kMinKeyLength) {
      return error(absl::StrCat("the key has ", key.size(), " characters, fewer than ",
                                kMinKeyLength, " (generate one with `openssl rand -hex 32`)"));
    }
    const Digest digest = Sha256(key);
    if (auto [it, inserted] = line_of.emplace(digest, line); !inserted) {
      return error(absl::StrCat("the key repeats line ", it->second));
    }
    digests.push_back(digest);
  }
  if (digests.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, " contains no API key (one key per line; '#' starts a comment)"));
  }
  return ApiKeys(std::move(digests));
}

absl::StatusOr<ApiKeys> ApiKeys::LoadFile(const std::string& path) {
  const std::string source = absl::StrCat("--api-keys-file ", path);
  std::ifstream in(path);
  if (!in) {
    const int err = errno;
    return absl::NotFoundError(absl::StrCat("cannot read ", source, ": ", std::strerror(err)));
  }
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(std::move(line));
  if (in.bad()) {
    return absl::DataLossError(absl::StrCat("error reading ", source));
  }
  return FromLines(lines, source);
}

bool ApiKeys::Contains(absl::string_view key) const {
  const Digest digest = Sha256(key);
  // Visit every key and fold with |, never ||: no early exit on a match,
  // and CRYPTO_memcmp takes the same time whatever bytes differ.
  unsigned match = 0;
  for (const Digest& candidate : digests_) {
    match |=
        static_cast<unsigned>(CRYPTO_memcmp(candidate.data(), digest.data(), digest.size()) == 0);
  }
  return match != 0;
}

bool ApiKeyAuthProcessor::IsExempt(absl::string_view method) {
  return absl::StartsWith(method, kHealthPrefix);
}

absl::Status ApiKeyAuthProcessor::Check(absl::string_view method,
                                        const std::vector<absl::string_view>& authorization) const {
  if (IsExempt(method)) return absl::OkStatus();
  if (authorization.empty()) return Unauthenticated("missing API key");
  // Two values would leave it to chance which one a proxy or handler reads.
  if (authorization.size() > 1) return Unauthenticated("more than one authorization entry");
  absl::string_view value = authorization.front();
  // The scheme is case-insensitive (RFC 7235 section 2.1).
  if (value.size() < kBearer.size() ||
      !absl::EqualsIgnoreCase(value.substr(0, kBearer.size()), kBearer)) {
    return Unauthenticated("the authorization metadata is not of the form 'Bearer <api key>'");
  }
  const absl::string_view key = absl::StripAsciiWhitespace(value.substr(kBearer.size()));
  if (key.empty()) return Unauthenticated("empty API key");
  if (!keys_.Contains(key)) return Unauthenticated("invalid API key");
  return absl::OkStatus();
}

grpc::Status ApiKeyAuthProcessor::Process(const InputMetadata& auth_metadata,
                                          grpc::AuthContext* /*context*/,
                                          OutputMetadata* consumed_auth_metadata,
                                          OutputMetadata* /*response_metadata*/) {
  // The server auth filter passes the call's initial metadata, including
  // the ":path" pseudo-header (checked against gRPC 1.51).
  absl::string_view method;
  if (auto it = auth_metadata.find(":path"); it != auth_metadata.end()) {
    method = absl::string_view(it->second.data(), it->second.size());
  }
  std::vector<absl::string_view> authorization;
  auto [begin, end] = auth_metadata.equal_range("authorization");
  for (auto it = begin; it != end; ++it) {
    authorization.emplace_back(it->second.data(), it->second.size());
  }
  absl::Status status = Check(method, authorization);
  if (status.ok() && !IsExempt(method)) {
    // Remove the key from what the service sees, so no handler can log it.
    for (absl::string_view value : authorization) {
      consumed_auth_metadata->emplace("authorization", std::string(value));
    }
  }
  return ToGrpc(status);
}

}  // namespace kestrel::server
