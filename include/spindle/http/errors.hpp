#pragma once
/// \file
/// The HTTP layer's errors (kinds as in the CLI's JSON output).

#include "spindle/error.hpp"
#include "spindle/net/errors.hpp"

namespace spindle::http {

/// Not an http:// or https:// URL with a host (bad syntax, empty host,
/// unsupported scheme, bad port).
SPINDLE_DEFINE_ERROR(invalid_url_error, invalid_url);

/// The peer sent something that is not valid HTTP/1.1 (malformed status
/// line or headers, bad chunked encoding, headers too large, a body longer
/// than allowed, a message cut short by the end of the connection).
SPINDLE_DEFINE_ERROR(protocol_error, protocol);

/// A redirect that the client will not follow: more than max_redirects, a
/// Location that is missing a usable URL or names another scheme, or an
/// https:// page redirecting to http:// (refused unless
/// client_options::allow_insecure_redirects). The message names the URLs.
SPINDLE_DEFINE_ERROR(redirect_error, redirect);

}  // namespace spindle::http
