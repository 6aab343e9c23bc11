// Kestrel's release version, reported by GetServerInfo and --version.
#ifndef KESTREL_SERVER_VERSION_H_
#define KESTREL_SERVER_VERSION_H_

namespace kestrel::server {

inline constexpr char kVersion[] = "0.1.0";

}  // namespace kestrel::server

#endif  // KESTREL_SERVER_VERSION_H_
