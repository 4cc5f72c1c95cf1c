#include "spindle/http/url.hpp"

#include <algorithm>
#include <array>
#include <charconv>

#include "spindle/net/address.hpp"

namespace spindle::http {

namespace {

// ASCII only (URLs are; std::tolower consults the locale per character).
char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = lower(c);
  return out;
}

// `s` equals the lower-case `word`, ignoring ASCII case.
bool is_word(std::string_view s, std::string_view word) {
  if (s.size() != word.size()) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (lower(s[i]) != word[i]) return false;
  }
  return true;
}

[[noreturn]] void invalid(std::string_view text, const std::string& why) {
  std::string shown(text.substr(0, 200));
  throw invalid_url_error("invalid URL '" + shown + "': " + why);
}

// RFC 3986 reg-name characters (unreserved, sub-delims, '%'), as a table:
// no locale lookups per character.
constexpr auto host_chars = [] {
  std::array<bool, 256> t{};
  for (int c = 'a'; c <= 'z'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (int c = '0'; c <= '9'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (unsigned char c : std::string_view("-._~%!$&'()*+,;=")) t[c] = true;
  return t;
}();

bool host_char_ok(char c) { return host_chars[static_cast<unsigned char>(c)]; }

// The end of the authority: the first '/', '?' or '#' (npos if none).
std::size_t authority_end(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '/' || s[i] == '?' || s[i] == '#') return i;
  }
  return std::string_view::npos;
}

}  // namespace

url url::parse(std::string_view text) {
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) invalid(text, "contains a space or control character");
  }
  const auto colon = text.find(':');
  if (colon == std::string_view::npos || colon == 0)
    invalid(text, "no scheme (expected http:// or https://)");
  url u;
  const std::string_view scheme = text.substr(0, colon);
  if (is_word(scheme, "http")) {
    u.scheme = "http";
  } else if (is_word(scheme, "https")) {
    u.scheme = "https";
  } else {
    invalid(text, "unsupported scheme '" + lower(scheme) + "'");
  }
  std::string_view rest = text.substr(colon + 1);
  if (!rest.starts_with("//")) invalid(text, "expected '//' after '" + u.scheme + ":'");
  rest.remove_prefix(2);
  const std::size_t end_of_authority = authority_end(rest);
  std::string_view authority = rest.substr(0, end_of_authority);
  std::string_view after =
      end_of_authority == std::string_view::npos ? std::string_view{} : rest.substr(end_of_authority);
  if (auto at = authority.rfind('@'); at != std::string_view::npos) {
    u.userinfo = std::string(authority.substr(0, at));
    authority.remove_prefix(at + 1);
  }
  std::string_view host = authority;
  std::string_view port;
  if (authority.starts_with('[')) {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) invalid(text, "unterminated IPv6 literal");
    host = authority.substr(1, close - 1);
    std::string_view tail = authority.substr(close + 1);
    if (!tail.empty()) {
      if (tail.front() != ':') invalid(text, "junk after the IPv6 literal");
      port = tail.substr(1);
    }
    if (!net::socket_address::parse(host, 0) || !net::socket_address::parse(host, 0)->is_v6())
      invalid(text, "bad IPv6 literal");
  } else if (auto c = authority.rfind(':'); c != std::string_view::npos) {
    host = authority.substr(0, c);
    port = authority.substr(c + 1);
  }
  if (host.empty()) invalid(text, "empty host");
  if (authority.starts_with('[')) {
    u.host = lower(host);
  } else {
    u.host.resize(host.size());  // checked and lower-cased in one pass
    for (std::size_t i = 0; i < host.size(); ++i) {
      const char c = host[i];
      if (!host_char_ok(c)) invalid(text, std::string("bad character '") + c + "' in host");
      u.host[i] = lower(c);
    }
  }
  if (port.empty()) {
    u.port = u.is_https() ? 443 : 80;
  } else {
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc{} || end != port.data() + port.size() || value == 0 || value > 65535)
      invalid(text, "bad port '" + std::string(port) + "'");
    u.port = static_cast<std::uint16_t>(value);
  }
  if (auto hash = after.find('#'); hash != std::string_view::npos) after = after.substr(0, hash);
  if (after.empty() || after.front() == '?') {
    u.target = '/';  // (not "/" + ...: g++ 12 -Wrestrict false positive)
    u.target += after;
  } else {
    u.target = std::string(after);
  }
  return u;
}

std::string url::host_header() const {
  std::string h;  // (appends: g++ 12 -Wrestrict false positive on "[" + host)
  const bool v6 = host.find(':') != std::string::npos;
  if (v6) h += '[';
  h += host;
  if (v6) h += ']';
  if (!default_port()) {
    char digits[8];
    auto [end, ec] = std::to_chars(digits, digits + sizeof digits, port);
    h += ':';
    h.append(digits, static_cast<std::size_t>(end - digits));
  }
  return h;
}

std::string url::origin() const {
  std::string o = scheme;
  o += "://";
  o += host_header();
  return o;
}

std::string url::to_string() const { return origin() + target; }

url url::resolve(std::string_view location) const {
  if (location.find("://") != std::string_view::npos) return parse(location);
  if (location.starts_with("//")) return parse(scheme + ":" + std::string(location));
  url u = *this;
  if (location.starts_with('/')) {
    u.target = std::string(location);
  } else {
    std::string base = target.substr(0, target.find('?'));
    base = base.substr(0, base.rfind('/') + 1);
    u.target = base + std::string(location);
  }
  if (auto hash = u.target.find('#'); hash != std::string::npos) u.target.resize(hash);
  for (char c : u.target) {
    const auto uc = static_cast<unsigned char>(c);
    if (uc <= 0x20 || uc == 0x7f) invalid(location, "contains a space or control character");
  }
  return u;
}

}  // namespace spindle::http
