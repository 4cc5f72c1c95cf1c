#include "spindle/net/address.hpp"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>

#include <cstring>

namespace spindle::net {

std::optional<socket_address> socket_address::parse(std::string_view ip, std::uint16_t port) {
  if (ip.size() >= 2 && ip.front() == '[' && ip.back() == ']') ip = ip.substr(1, ip.size() - 2);
  if (ip.empty() || ip.size() > 63) return std::nullopt;
  std::string text(ip);
  socket_address a;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&a.storage_);
  if (::inet_pton(AF_INET, text.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    return a;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.storage_);
  std::string scope;
  if (auto pct = text.find('%'); pct != std::string::npos) {
    scope = text.substr(pct + 1);
    text.resize(pct);
  }
  if (::inet_pton(AF_INET6, text.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    if (!scope.empty()) {
      unsigned index = ::if_nametoindex(scope.c_str());
      if (index == 0) return std::nullopt;
      v6->sin6_scope_id = index;
    }
    return a;
  }
  return std::nullopt;
}

socket_address socket_address::from(const sockaddr* sa, socklen_t len) noexcept {
  socket_address a;
  if (sa == nullptr) return a;
  if (sa->sa_family == AF_INET && len >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
    std::memcpy(&a.storage_, sa, sizeof(sockaddr_in));
  } else if (sa->sa_family == AF_INET6 && len >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
    std::memcpy(&a.storage_, sa, sizeof(sockaddr_in6));
  }
  return a;
}

socket_address socket_address::loopback_v4(std::uint16_t port) noexcept {
  socket_address a;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&a.storage_);
  v4->sin_family = AF_INET;
  v4->sin_port = htons(port);
  v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

std::uint16_t socket_address::port() const noexcept {
  if (storage_.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
  if (storage_.ss_family == AF_INET6)
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
  return 0;
}

void socket_address::set_port(std::uint16_t port) noexcept {
  if (storage_.ss_family == AF_INET) reinterpret_cast<sockaddr_in*>(&storage_)->sin_port = htons(port);
  if (storage_.ss_family == AF_INET6) reinterpret_cast<sockaddr_in6*>(&storage_)->sin6_port = htons(port);
}

socklen_t socket_address::size() const noexcept {
  if (storage_.ss_family == AF_INET) return sizeof(sockaddr_in);
  if (storage_.ss_family == AF_INET6) return sizeof(sockaddr_in6);
  return 0;
}

std::string socket_address::ip() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (storage_.ss_family == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, buf, sizeof buf);
  } else if (storage_.ss_family == AF_INET6) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr, buf, sizeof buf);
  } else {
    return "(none)";
  }
  return buf;
}

std::string socket_address::to_string() const {
  std::string s;  // (not "[" + ip(): g++ 12 -Wrestrict false positive)
  if (is_v6()) s += '[';
  s += ip();
  if (is_v6()) s += ']';
  s += ':';
  s += std::to_string(port());
  return s;
}

bool operator==(const socket_address& a, const socket_address& b) noexcept {
  return a.size() == b.size() && std::memcmp(&a.storage_, &b.storage_, a.size()) == 0;
}

}  // namespace spindle::net
