#pragma once
/// \file
/// The network layer's errors. Each has a stable kind() that the CLI writes
/// into its JSON output and that retry policies classify by.

#include <string>

#include "spindle/error.hpp"

namespace spindle::net {

/// A name could not be resolved (NXDOMAIN, no address of the wanted family,
/// the resolver timed out or could not reach a server).
SPINDLE_DEFINE_ERROR(dns_error, dns);

/// A TCP connection could not be established (refused, unreachable, reset
/// during connect), or a connect attempt's own timeout expired on every
/// address. The message names the addresses tried and why each failed.
SPINDLE_DEFINE_ERROR(connect_error, connect);

/// The TLS handshake or record layer failed; the message carries OpenSSL's
/// reason (e.g. "certificate verify failed: self-signed certificate").
SPINDLE_DEFINE_ERROR(tls_error, tls);

/// A read or write on an established connection failed (reset by the peer,
/// broken pipe). Its kind() is "connect": for retry purposes a connection
/// that died is a connection problem.
SPINDLE_DEFINE_ERROR(connection_error, connect);

}  // namespace spindle::net
