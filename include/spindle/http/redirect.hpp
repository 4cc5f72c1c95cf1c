#pragma once
/// \file
/// The redirect rules of http::client, as RFC 9110 §15.4 and curl's safety
/// rules have them: which responses are followed, what the next request is,
/// and where credentials may go. A policy of its own, apart from the pool
/// and the protocol, so it can be read and tested on its own.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "spindle/http/errors.hpp"
#include "spindle/http/message.hpp"
#include "spindle/http/url.hpp"

namespace spindle::http {

/// 301, 302, 303, 307 or 308: a redirect the client may follow (300 and 305
/// are not followed, as in curl).
[[nodiscard]] constexpr bool is_redirect_status(int status) noexcept {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/// Authorization, Proxy-Authorization or Cookie (any case): the fields that
/// never go to another origin than the request's own.
[[nodiscard]] bool is_credential_field(std::string_view name) noexcept;

/// Follows the redirects of one request. It remembers the first URL's
/// origin (scheme, host, port) and the credential fields it took off the
/// request while the request is at another origin.
///
/// **Thread safety:** one request's, on one thread.
class redirect_follower {
 public:
  /// `first`: the URL the caller asked for. `allow_insecure`: follow an
  /// https:// page's redirect to http://.
  redirect_follower(const url& first, bool allow_insecure);

  /// Turns `req`, which got a redirect (`status`, `location`) from `u`,
  /// into the next hop:
  ///  - `u` becomes `location` resolved against `u` (RFC 3986 §5; the
  ///    fragment is dropped, so is any userinfo in it);
  ///  - the method: 303 makes a GET (a HEAD stays HEAD), and so do 301 and
  ///    302 after a POST (as curl and browsers do); the body and its
  ///    Content-* and Transfer-Encoding fields go with the method change.
  ///    307 and 308 keep method and body;
  ///  - credentials: a hop to any other origin than the first (scheme, host
  ///    or port differ) drops Authorization, Proxy-Authorization and
  ///    Cookie; a hop back to the first origin sends them again.
  /// Throws redirect_error naming both URLs for a Location that is no
  /// usable http(s) URL, and for https → http unless allowed.
  void follow(url& u, request& req, int status, std::string_view location);

  /// True while the request is at its first origin.
  [[nodiscard]] bool at_first_origin() const noexcept { return !away_; }

 private:
  std::string scheme_, host_;
  std::uint16_t port_ = 0;
  bool allow_insecure_ = false;
  bool away_ = false;
  std::vector<headers::field> stashed_;  // credential fields, while away
};

}  // namespace spindle::http
