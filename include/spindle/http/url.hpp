#pragma once
/// \file
/// url: the parts of an http:// or https:// URL that a client needs, how a
/// redirect's Location resolves against one, and the userinfo's credentials.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "spindle/http/errors.hpp"

namespace spindle::http {

/// An absolute http:// or https:// URL, split and normalised.
///
/// **Thread safety:** a plain value. Distinct objects: safe. Shared objects:
/// safe to read (every member function is const) from any thread.
///
/// **Cancellation:** nothing here suspends.
struct url {
  std::string scheme;  ///< "http" or "https" (lower case)
  /// Lower case; an IPv6 literal without brackets; a host that is not all
  /// ASCII as its IDNA A-label ("bücher.example" -> "xn--bcher-kva.example").
  std::string host;
  std::uint16_t port = 0;
  std::string target;    ///< path and query, "/" at least (the fragment is dropped)
  std::string userinfo;  ///< as written ("user:p%40ss"); see basic_authorization()

  [[nodiscard]] bool is_https() const noexcept { return scheme == "https"; }
  [[nodiscard]] bool default_port() const noexcept { return port == (is_https() ? 443 : 80); }
  /// "https://example.com" or "http://[::1]:8080": the connection pool's key.
  /// Never shows the userinfo.
  [[nodiscard]] std::string origin() const;
  /// The Host header value: host, with the port unless it is the default.
  [[nodiscard]] std::string host_header() const;
  /// The whole URL, normalised, without the userinfo: safe to log and to put
  /// in error messages.
  [[nodiscard]] std::string to_string() const;

  /// The Authorization header value for the userinfo's credentials:
  /// "Basic " + base64(user ":" password), user and password percent-decoded
  /// (RFC 3986 §3.2.1, split at the first ':'). Userinfo without ':' has an
  /// empty password ("user" sends "user:", as curl does). nullopt when there
  /// is no userinfo, or an empty one ("http://@host/").
  [[nodiscard]] std::optional<std::string> basic_authorization() const;

  /// Parses an absolute URL. Throws invalid_url_error naming what is wrong:
  /// "htp:/x" (unsupported scheme 'htp'), "http://" (empty host),
  /// "http://h:99999/" (bad port), spaces or control characters, a non-ASCII
  /// host that IDNA refuses (with libidn2's reason). The message shows the
  /// URL with a password in its userinfo as "***".
  ///
  /// The path and query are kept byte for byte; a percent-encoded host is
  /// not decoded. A host with bytes >= 0x80 is taken as UTF-8 and converted
  /// with libidn2 as curl does (UTS #46 non-transitional, else transitional);
  /// ASCII hosts never reach libidn2.
  static url parse(std::string_view text);

  /// Resolves a redirect's Location (an RFC 3986 URI reference) against this
  /// URL as RFC 3986 §5.2 does, dot segments removed:
  ///
  /// - "https://h/p" (absolute; a scheme is letters, digits, '+', '-', '.'
  ///   then ':' before any '/', '?' or '#', so "/go?to=http://x/" is
  ///   relative), "//h:81/p" (this URL's scheme), "/a/../b" ("/b"),
  ///   "../x" and "./y" (merged with this URL's path), "?q" (this path, a
  ///   new query), "" and "#f" (this URL). The fragment is always dropped.
  /// - "http:g" with this URL's scheme is the relative "g" (§5.2.2, the
  ///   choice "for backward compatibility" that browsers make too).
  /// - A relative reference keeps this URL's authority, userinfo included
  ///   (the same origin); an absolute or scheme-relative one carries its own.
  /// - Lenient as curl for what servers really send: spaces and bytes
  ///   >= 0x80 in the reference's path and query are percent-encoded
  ///   ("/a b" -> "/a%20b"); a non-ASCII host goes through IDNA.
  ///
  /// Throws invalid_url_error for another scheme ("ftp://h/": unsupported
  /// scheme 'ftp'), control characters (< 0x20, 0x7f), and whatever parse()
  /// refuses in an absolute or scheme-relative reference.
  [[nodiscard]] url resolve(std::string_view location) const;
};

/// Decodes the %XX escapes of `text` (RFC 3986 §2.1, either case of hex
/// digit). A '%' not followed by two hex digits is kept as it is.
[[nodiscard]] std::string percent_decode(std::string_view text);

}  // namespace spindle::http
