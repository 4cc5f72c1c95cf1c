#pragma once
/// \file
/// socket_address: an IPv4 or IPv6 address and port.

#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace spindle::net {

/// An IPv4 or IPv6 socket address (a sockaddr_storage), copyable.
class socket_address {
 public:
  socket_address() noexcept = default;
  /// From a literal IP ("127.0.0.1", "::1", "[::1]", "fe80::1%eth0"), or
  /// nullopt when `ip` is not one (a host name).
  static std::optional<socket_address> parse(std::string_view ip, std::uint16_t port);
  /// Copies a sockaddr (AF_INET or AF_INET6; anything else gives an empty address).
  static socket_address from(const sockaddr* sa, socklen_t len) noexcept;
  static socket_address loopback_v4(std::uint16_t port) noexcept;

  [[nodiscard]] bool empty() const noexcept { return storage_.ss_family == AF_UNSPEC; }
  [[nodiscard]] int family() const noexcept { return storage_.ss_family; }
  [[nodiscard]] bool is_v6() const noexcept { return storage_.ss_family == AF_INET6; }
  [[nodiscard]] std::uint16_t port() const noexcept;
  void set_port(std::uint16_t port) noexcept;
  /// "127.0.0.1" or "::1".
  [[nodiscard]] std::string ip() const;
  /// "127.0.0.1:80" or "[::1]:80".
  [[nodiscard]] std::string to_string() const;

  [[nodiscard]] const sockaddr* data() const noexcept { return reinterpret_cast<const sockaddr*>(&storage_); }
  [[nodiscard]] sockaddr* data() noexcept { return reinterpret_cast<sockaddr*>(&storage_); }
  [[nodiscard]] socklen_t size() const noexcept;

  friend bool operator==(const socket_address& a, const socket_address& b) noexcept;

 private:
  sockaddr_storage storage_{};
};

}  // namespace spindle::net
