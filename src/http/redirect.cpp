// The redirect rules (include/spindle/http/redirect.hpp).

#include "spindle/http/redirect.hpp"

#include <algorithm>
#include <array>

namespace spindle::http {

bool is_credential_field(std::string_view name) noexcept {
  return iequals(name, "Authorization") || iequals(name, "Cookie") || iequals(name, "Proxy-Authorization");
}

redirect_follower::redirect_follower(const url& first, bool allow_insecure)
    : scheme_(first.scheme), host_(first.host), port_(first.port), allow_insecure_(allow_insecure) {}

void redirect_follower::follow(url& u, request& req, int status, std::string_view location) {
  url next;
  try {
    next = u.resolve(location);
  } catch (const error& e) {
    throw redirect_error("cannot follow the redirect from " + u.to_string() + ": " + e.what());
  }
  next.userinfo.clear();  // credentials come from the caller only
  if (u.is_https() && !next.is_https() && !allow_insecure_) {
    throw redirect_error("refused the redirect from " + u.to_string() + " to " + next.to_string() +
                         " (HTTPS to plain HTTP; allow_insecure_redirects or --allow-insecure-redirects "
                         "follows it, without credentials)");
  }

  const bool to_get =
      (status == 303 && req.method != "HEAD") || ((status == 301 || status == 302) && req.method == "POST");
  if (to_get) {
    req.method = "GET";
    req.body.clear();
    static constexpr std::array<std::string_view, 6> body_fields = {"Content-Length",   "Content-Type",
                                                                    "Content-Encoding", "Content-Language",
                                                                    "Content-Location", "Transfer-Encoding"};
    for (std::string_view f : body_fields) req.headers.remove(f);
  }

  const bool home = next.scheme == scheme_ && next.host == host_ && next.port == port_;
  if (!home && !away_) {
    // Leaving the first origin: the credentials stay behind.
    headers kept;
    for (const auto& f : req.headers) {
      if (is_credential_field(f.first)) {
        stashed_.push_back(f);
      } else {
        kept.add(f.first, f.second);
      }
    }
    if (!stashed_.empty()) req.headers = std::move(kept);
    away_ = true;
  } else if (home && away_) {
    for (auto& f : stashed_) req.headers.add(std::move(f.first), std::move(f.second));
    stashed_.clear();
    away_ = false;
  }
  u = std::move(next);
}

}  // namespace spindle::http
