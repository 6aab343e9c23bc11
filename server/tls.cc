// MakeServerCredentials: reads the PEM files, checks them with OpenSSL (the
// library Debian's gRPC itself uses for TLS) and builds SslServerCredentials.
#include "server/tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace kestrel::server {
namespace {

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using KeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;

// "--tls-key-file /etc/kestrel/key.pem": how every message names a file.
std::string Name(const char* flag, const std::string& path) {
  return absl::StrCat(flag, " ", path);
}

absl::StatusOr<std::string> ReadFile(const char* flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    return absl::NotFoundError(
        absl::StrCat("cannot read ", Name(flag, path), ": ", std::strerror(err)));
  }
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading ", Name(flag, path)));
  return contents.str();
}

// The first OpenSSL error queued, and the queue cleared (it is per thread;
// leftovers would be misreported by the next OpenSSL user on this thread).
std::string OpenSslError() {
  const unsigned long code = ERR_peek_last_error();
  char text[256] = "no detail";
  if (code != 0) ERR_error_string_n(code, text, sizeof(text));
  ERR_clear_error();
  return text;
}

BioPtr MemoryBio(const std::string& pem) {
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// Every certificate in `pem`; an error when there is none.
absl::StatusOr<std::vector<X509Ptr>> ParseCertificates(const char* flag, const std::string& path,
                                                       const std::string& pem) {
  BioPtr bio = MemoryBio(pem);
  std::vector<X509Ptr> certs;
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    certs.emplace_back(cert);
  }
  ERR_clear_error();  // the loop ends on an expected "no start line"
  if (certs.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Name(flag, path), " holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
  }
  return certs;
}

// Refuses certificates outside their validity period: every handshake with
// them would fail, and the reason would only show on the client side.
absl::Status CheckDates(const char* flag, const std::string& path, X509* cert) {
  if (X509_cmp_current_time(X509_get0_notAfter(cert)) < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("the certificate in ", Name(flag, path), " has expired"));
  }
  if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("the certificate in ", Name(flag, path), " is not valid yet"));
  }
  return absl::OkStatus();
}

// Never prompts on a terminal for a passphrase (OpenSSL's default when no
// callback is given): an encrypted key is an error instead.
int NoPassphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*userdata*/) { return -1; }

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsOptions& options) {
  if (options.cert_file.empty()) {
    return absl::InvalidArgumentError(
        "TLS needs --tls-cert-file (set with --tls-key-file or --tls-client-ca-file)");
  }
  if (options.key_file.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS needs --tls-key-file for --tls-cert-file ", options.cert_file));
  }
  ASSIGN_OR_RETURN(const std::string cert_pem, ReadFile("--tls-cert-file", options.cert_file));
  ASSIGN_OR_RETURN(const std::string key_pem, ReadFile("--tls-key-file", options.key_file));

  ASSIGN_OR_RETURN(std::vector<X509Ptr> chain,
                   ParseCertificates("--tls-cert-file", options.cert_file, cert_pem));
  RETURN_IF_ERROR(CheckDates("--tls-cert-file", options.cert_file, chain.front().get()));
  BioPtr key_bio = MemoryBio(key_pem);
  KeyPtr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, NoPassphrase, nullptr));
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        Name("--tls-key-file", options.key_file),
        " holds no usable PEM private key (encrypted keys are not supported): ", OpenSslError()));
  }
  if (X509_check_private_key(chain.front().get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(Name("--tls-key-file", options.key_file),
                                                   " is not the key of the certificate in ",
                                                   Name("--tls-cert-file", options.cert_file)));
  }

  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  ssl.pem_key_cert_pairs.push_back({key_pem, cert_pem});
  if (!options.client_ca_file.empty()) {
    ASSIGN_OR_RETURN(std::string ca_pem, ReadFile("--tls-client-ca-file", options.client_ca_file));
    ASSIGN_OR_RETURN(std::vector<X509Ptr> cas,
                     ParseCertificates("--tls-client-ca-file", options.client_ca_file, ca_pem));
    for (const X509Ptr& ca : cas) {
      RETURN_IF_ERROR(CheckDates("--tls-client-ca-file", options.client_ca_file, ca.get()));
    }
    ssl.pem_root_certs = std::move(ca_pem);
    // Mutual TLS: no certificate, or one that does not verify against the
    // client CAs, fails the handshake before any call is made.
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeListeningCredentials(
    const TlsOptions& tls, std::shared_ptr<grpc::AuthMetadataProcessor> auth) {
  if (!tls.enabled()) {
    if (auth != nullptr) {
      return absl::FailedPreconditionError(
          "API keys (--api-keys-file) require TLS (--tls-cert-file and --tls-key-file): a bearer "
          "key sent over plaintext can be read by anyone on the network path, and gRPC checks "
          "call credentials only on TLS ports");
    }
    return grpc::InsecureServerCredentials();
  }
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                   MakeServerCredentials(tls));
  if (auth != nullptr) credentials->SetAuthMetadataProcessor(auth);
  return credentials;
}

}  // namespace kestrel::server
