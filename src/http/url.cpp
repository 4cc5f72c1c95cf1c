#include "spindle/http/url.hpp"

#include <idn2.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <memory>

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

// The text as an error message may show it: a password in the userinfo
// ("http://user:pw@h/") becomes "***". Best effort: the userinfo is what lies
// between "://" and the last '@' before the next '/'. Cutting at '/' alone
// (not also at '?' or '#', as parse() does) may hide a little too much,
// never too little, of what parse() would take for the userinfo.
std::string redacted(std::string_view text) {
  std::string shown(text);
  if (const auto slashes = shown.find("://"); slashes != std::string::npos) {
    const std::size_t start = slashes + 3;
    const std::string_view authority = std::string_view(shown).substr(start, shown.find('/', start) - start);
    if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
      if (const auto colon = authority.substr(0, at).find(':'); colon != std::string_view::npos)
        shown.replace(start + colon + 1, at - colon - 1, "***");
    }
  }
  if (shown.size() > 200) shown.resize(200);
  return shown;
}

[[noreturn]] void invalid(std::string_view text, const std::string& why) {
  throw invalid_url_error("invalid URL '" + redacted(text) + "': " + why);
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

bool is_control(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f;
}

// The end of the authority: the first '/', '?' or '#' (npos if none).
std::size_t authority_end(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '/' || s[i] == '?' || s[i] == '#') return i;
  }
  return std::string_view::npos;
}

// A host with bytes >= 0x80 (UTF-8) as its A-label ("bücher.example" ->
// "xn--bcher-kva.example"), as curl makes it: UTS #46 non-transitional
// processing (IDNA 2008, which also lower-cases), and if that refuses the
// name, transitional processing (IDNA 2003 compatible: "ß" -> "ss", emoji
// accepted). The reason given is the non-transitional one.
[[gnu::cold, gnu::noinline]] std::string idna_host(std::string_view text, std::string_view host) {
  const std::string name(host);  // idn2 wants a NUL-terminated string
  char* out = nullptr;
  int rc = idn2_to_ascii_8z(name.c_str(), &out, IDN2_NONTRANSITIONAL);
  if (rc != IDN2_OK) {
    out = nullptr;
    if (idn2_to_ascii_8z(name.c_str(), &out, IDN2_TRANSITIONAL) == IDN2_OK) rc = IDN2_OK;
  }
  if (rc != IDN2_OK) invalid(text, "bad internationalized host '" + name + "': " + idn2_strerror(rc));
  const std::unique_ptr<char, void (*)(void*)> owned(out, &idn2_free);
  std::string ascii(out);
  for (char& c : ascii) {
    if (!host_char_ok(c)) invalid(text, std::string("bad character '") + c + "' in host");
    c = lower(c);
  }
  return ascii;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string base64(std::string_view s) {
  static constexpr char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((s.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= s.size(); i += 3) {
    const auto n = static_cast<unsigned char>(s[i]) << 16 | static_cast<unsigned char>(s[i + 1]) << 8 |
                   static_cast<unsigned char>(s[i + 2]);
    for (int shift : {18, 12, 6, 0}) out += digits[(n >> shift) & 63];
  }
  if (const std::size_t left = s.size() - i; left > 0) {
    auto n = static_cast<unsigned char>(s[i]) << 16;
    if (left == 2) n |= static_cast<unsigned char>(s[i + 1]) << 8;
    out += digits[(n >> 18) & 63];
    out += digits[(n >> 12) & 63];
    out += left == 2 ? digits[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

// A reference's path or query as it may go into a request target: spaces and
// bytes >= 0x80 percent-encoded, as curl does for the Location values servers
// really send ("/a b", raw UTF-8). Other characters are kept as they are.
void append_encoded(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u == 0x20 || u >= 0x80) {
      out += '%';
      out += hex[u >> 4];
      out += hex[u & 15];
    } else {
      out += c;
    }
  }
}

// RFC 3986 §5.2.4: "/a/b/../c/./d" -> "/a/c/d".
std::string remove_dot_segments(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  const auto drop_last_segment = [&out] {
    const auto slash = out.rfind('/');
    out.resize(slash == std::string::npos ? 0 : slash);
  };
  while (!in.empty()) {
    if (in.starts_with("../")) {  // A
      in.remove_prefix(3);
    } else if (in.starts_with("./")) {
      in.remove_prefix(2);
    } else if (in.starts_with("/./")) {  // B
      in.remove_prefix(2);
    } else if (in == "/.") {
      in = "/";
    } else if (in.starts_with("/../")) {  // C
      in.remove_prefix(3);
      drop_last_segment();
    } else if (in == "/..") {
      in = "/";
      drop_last_segment();
    } else if (in == "." || in == "..") {  // D
      in = {};
    } else {  // E: the first segment (with its leading '/') moves to the output
      const std::size_t end = std::min(in.find('/', 1), in.size());
      out += in.substr(0, end);
      in.remove_prefix(end);
    }
  }
  return out;
}

// A URI reference split as in RFC 3986 §5.2.1 (the fragment already cut off).
struct reference {
  std::string_view scheme;  // empty: none
  std::optional<std::string_view> authority;
  std::string_view path;
  std::optional<std::string_view> query;
};

reference split(std::string_view text) {
  reference r;
  // A scheme is ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":" before any
  // '/', '?' or '#': "/capture?next=http://x/" is a relative reference.
  const auto scheme_char = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '-' || c == '.';
  };
  if (!text.empty() && lower(text[0]) >= 'a' && lower(text[0]) <= 'z') {
    std::size_t i = 1;
    while (i < text.size() && scheme_char(text[i])) ++i;
    if (i < text.size() && text[i] == ':') {
      r.scheme = text.substr(0, i);
      text.remove_prefix(i + 1);
    }
  }
  if (text.starts_with("//")) {
    text.remove_prefix(2);
    const std::size_t end = std::min(authority_end(text), text.size());
    r.authority = text.substr(0, end);
    text.remove_prefix(end);
  }
  const auto question = text.find('?');
  r.path = text.substr(0, question);
  if (question != std::string_view::npos) r.query = text.substr(question + 1);
  return r;
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
    std::size_t i = 0;
    for (; i < host.size() && host_char_ok(host[i]); ++i) u.host[i] = lower(host[i]);
    // Only a host that is not all ASCII leaves the table-driven pass. (The
    // check after the loop, not in it, keeps the loop as tight as it was.)
    if (i != host.size()) {
      if (static_cast<unsigned char>(host[i]) < 0x80)
        invalid(text, std::string("bad character '") + host[i] + "' in host");
      u.host = idna_host(text, host);
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

namespace {
// Appends host[:port] as in a Host header (one allocation for the caller).
void append_host_port(std::string& h, const url& u) {
  const bool v6 = u.host.find(':') != std::string::npos;
  if (v6) h += '[';  // (appends: g++ 12 -Wrestrict false positive on "[" + host)
  h += u.host;
  if (v6) h += ']';
  if (!u.default_port()) {
    char digits[8];
    auto [end, ec] = std::to_chars(digits, digits + sizeof digits, u.port);
    h += ':';
    h.append(digits, static_cast<std::size_t>(end - digits));
  }
}
}  // namespace

std::string url::host_header() const {
  std::string h;
  append_host_port(h, *this);
  return h;
}

std::string url::origin() const {
  std::string o;
  o.reserve(scheme.size() + 3 + host.size() + 8);
  o += scheme;
  o += "://";
  append_host_port(o, *this);
  return o;
}

// One allocation: the client builds it for every response (response::url).
std::string url::to_string() const {
  std::string s;
  s.reserve(scheme.size() + 3 + host.size() + 8 + target.size());
  s += scheme;
  s += "://";
  append_host_port(s, *this);
  s += target;
  return s;
}

std::optional<std::string> url::basic_authorization() const {
  if (userinfo.empty()) return std::nullopt;
  // RFC 3986 §3.2.1: user and password are split at the first ':' and then
  // decoded, so "%3A" may stand for a ':' in the user name. No ':' means an
  // empty password: "user" sends "user:", as curl does.
  const auto colon = userinfo.find(':');
  std::string credentials = percent_decode(std::string_view(userinfo).substr(0, colon));
  credentials += ':';
  if (colon != std::string::npos) credentials += percent_decode(std::string_view(userinfo).substr(colon + 1));
  return "Basic " + base64(credentials);
}

url url::resolve(std::string_view location) const {
  if (std::any_of(location.begin(), location.end(), is_control))
    invalid(location, "contains a control character");
  const reference r = split(location.substr(0, location.find('#')));  // the fragment is dropped
  if (!r.scheme.empty() && !is_word(r.scheme, "http") && !is_word(r.scheme, "https"))
    invalid(location, "unsupported scheme '" + lower(r.scheme) + "'");
  std::string path;  // the reference's own path and query, encoded
  append_encoded(path, r.path);
  std::string query;
  if (r.query) append_encoded(query, *r.query);
  if (r.authority || !(r.scheme.empty() || is_word(r.scheme, scheme))) {
    // Another authority (or "https:x" against an http base, which parse()
    // then refuses): parse() checks and normalises the host, port and
    // userinfo as it does for any URL.
    std::string text = r.scheme.empty() ? scheme : lower(r.scheme);
    text += ':';
    if (r.authority) {
      text += "//";
      text += *r.authority;
    }
    text += remove_dot_segments(path);
    if (r.query) {
      text += '?';
      text += query;
    }
    return parse(text);
  }
  // The same scheme (RFC 3986 §5.2.2 "for backward compatibility": "http:g"
  // is "g") and the same authority, userinfo included.
  url u = *this;
  const std::string_view base_path = std::string_view(target).substr(0, target.find('?'));
  if (path.empty()) {
    if (!r.query) return u;  // "", "#f": the base itself
    u.target = base_path;
  } else if (path.front() == '/') {
    u.target = remove_dot_segments(path);
  } else {
    // §5.2.3 merge: the base path up to its last '/', then the reference.
    std::string merged(base_path.substr(0, base_path.rfind('/') + 1));
    if (merged.empty()) merged = '/';
    merged += path;
    u.target = remove_dot_segments(merged);
  }
  if (u.target.empty()) u.target = '/';
  if (r.query) {
    u.target += '?';
    u.target += query;
  }
  return u;
}

std::string percent_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const int high = text[i] == '%' && i + 2 < text.size() ? hex_value(text[i + 1]) : -1;
    const int low = high >= 0 ? hex_value(text[i + 2]) : -1;
    if (low >= 0) {
      out += static_cast<char>(high << 4 | low);
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

}  // namespace spindle::http
