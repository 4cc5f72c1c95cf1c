#pragma once
/// \file
/// url: the parts of an http:// or https:// URL that a client needs.

#include <cstdint>
#include <string>
#include <string_view>

#include "spindle/http/errors.hpp"

namespace spindle::http {

struct url {
  std::string scheme;  ///< "http" or "https" (lower case)
  std::string host;    ///< lower case; an IPv6 literal without brackets
  std::uint16_t port = 0;
  std::string target;  ///< path and query, "/" at least (the fragment is dropped)
  std::string userinfo;

  [[nodiscard]] bool is_https() const noexcept { return scheme == "https"; }
  [[nodiscard]] bool default_port() const noexcept { return port == (is_https() ? 443 : 80); }
  /// "https://example.com" or "http://[::1]:8080": the connection pool's key.
  [[nodiscard]] std::string origin() const;
  /// The Host header value: host, with the port unless it is the default.
  [[nodiscard]] std::string host_header() const;
  /// The whole URL, normalised.
  [[nodiscard]] std::string to_string() const;

  /// Parses an absolute URL. Throws invalid_url_error naming what is wrong:
  /// "htp:/x" (unsupported scheme 'htp'), "http://" (empty host),
  /// "http://h:99999/" (bad port), spaces or control characters.
  static url parse(std::string_view text);
  /// Resolves a redirect's Location against this URL (absolute,
  /// scheme-relative "//host/p", absolute-path "/p" or relative "p").
  [[nodiscard]] url resolve(std::string_view location) const;
};

}  // namespace spindle::http
