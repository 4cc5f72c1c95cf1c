#pragma once
// Host-name checks and messages for the resolver (src/net/dns.cpp).

#include <optional>
#include <string>
#include <string_view>

namespace spindle::net::dns_names {

/// ASCII lower case.
std::string lower(std::string_view s);
/// The host as it may appear in a message: printable, bounded.
std::string printable(std::string_view host);
/// Throws dns_error "dns: lookup of '<host>' failed: <reason>".
[[noreturn]] void fail(std::string_view host, std::string_view reason);
/// Why `host` is not a name we can send to DNS, or nullopt when it is one
/// (letters, digits, '-' and '_' in labels of 1..63, at most 253 in all, one
/// optional trailing dot).
std::optional<std::string> invalid_name(std::string_view host);
/// RFC 6761 6.3: "localhost" and names under it are the loopback addresses.
bool is_localhost(std::string_view host);

}  // namespace spindle::net::dns_names
