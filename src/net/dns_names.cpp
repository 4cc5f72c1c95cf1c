#include "dns_names.hpp"

#include <cctype>

#include "spindle/net/errors.hpp"

namespace spindle::net::dns_names {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string printable(std::string_view host) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < host.size() && i < 120; ++i) {
    auto c = static_cast<unsigned char>(host[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 0xf];
    }
  }
  if (host.size() > 120) out += "...";
  return out;
}

[[noreturn]] void fail(std::string_view host, std::string_view reason) {
  throw dns_error("dns: lookup of '" + printable(host) + "' failed: " + std::string(reason));
}

std::optional<std::string> invalid_name(std::string_view host) {
  if (host.empty()) return "empty host name";
  std::string_view name = host;
  if (name.size() > 1 && name.back() == '.') name.remove_suffix(1);
  if (name.size() > 253) return "host name longer than 253 characters";
  std::size_t label = 0;
  for (char c : name) {
    if (c == '.') {
      if (label == 0) return "empty label in host name";
      label = 0;
      continue;
    }
    if (std::isalnum(static_cast<unsigned char>(c)) == 0 && c != '-' && c != '_') {
      return "invalid character '" + printable(std::string_view(&c, 1)) + "' in host name";
    }
    if (++label > 63) return "label longer than 63 characters in host name";
  }
  if (label == 0) return "empty label in host name";
  return std::nullopt;
}

bool is_localhost(std::string_view host) {
  std::string name = lower(host);
  if (!name.empty() && name.back() == '.') name.pop_back();
  constexpr std::string_view lh = "localhost";
  constexpr std::string_view sub = ".localhost";
  return name == lh ||
         (name.size() > sub.size() && name.compare(name.size() - sub.size(), sub.size(), sub) == 0);
}

}  // namespace spindle::net::dns_names
