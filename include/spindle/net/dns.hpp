#pragma once
/// \file
/// resolver: asynchronous DNS through c-ares, driven by the loop's reactor
/// (no thread per lookup), with a TTL-respecting cache. How it is built:
/// the overview at the top of src/net/dns.cpp.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "spindle/clock.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/net/address.hpp"
#include "spindle/net/errors.hpp"
#include "spindle/task.hpp"

namespace spindle::net {

enum class address_family : std::uint8_t { any, ipv4, ipv6 };

struct resolver_options {
  /// DNS servers as c-ares CSV ("127.0.0.1:5353,[::1]:53"); empty: the
  /// system's (/etc/resolv.conf), with its search list and /etc/hosts.
  /// With explicit servers the resolver asks them about exactly the name
  /// given: no search domains, no hosts file.
  std::string servers;
  /// Per-query timeout and tries (c-ares). These run in real time
  /// (CLOCK_MONOTONIC, as c-ares measures them), whatever the loop's clock;
  /// the whole lookup is also bounded by the caller's deadline, which is on
  /// the loop's clock.
  std::chrono::milliseconds query_timeout{2000};
  int tries = 2;
  /// Cached names (least recently used evicted beyond this); 0: no cache.
  std::size_t cache_capacity = 1024;
  /// Cap on how long an answer is kept, whatever its TTL. Expiry is measured
  /// on the loop's clock (a manual clock moves it in tests).
  duration max_ttl = std::chrono::minutes(5);
};

struct resolver_statistics {
  std::uint64_t lookups = 0;     ///< resolve() calls
  std::uint64_t cache_hits = 0;  ///< answered from the cache
  std::uint64_t literal = 0;     ///< IP literals and localhost: no query
  std::uint64_t queries = 0;     ///< sent to c-ares (concurrent lookups of one name share one)
  std::uint64_t failures = 0;    ///< ended in dns_error
  std::uint64_t in_flight = 0;   ///< queries outstanding in c-ares now
  /// Entries in the cache now (an expired one goes when next looked up or evicted).
  std::uint64_t cached_names = 0;
};

/// One c-ares channel on one loop. Its sockets and c-ares' retransmission
/// timer are watched by small tasks spawned on the loop while queries are
/// in flight (none are left once every query has ended). Destroy it on the
/// loop's thread, before the loop.
///
/// **Thread safety:** use only on the loop's thread (checked: other threads
/// get wrong_thread_error).
/// **Cancellation:** resolve() is a cancellation point; a cancelled lookup
/// leaves no callback behind. Concurrent lookups of one name share a query,
/// which goes on while any of them waits (its answer then fills the cache);
/// once no lookup waits for any query, the queries are cancelled in c-ares
/// and its sockets closed. Destroying the resolver fails the lookups in
/// flight with dns_error.
class resolver {
 public:
  explicit resolver(event_loop& loop, resolver_options opts = {});
  ~resolver();
  resolver(const resolver&) = delete;
  resolver& operator=(const resolver&) = delete;

  /// The addresses of `host`, with `port` set, in the order to try them
  /// (c-ares' order: RFC 6724 sorting). IP literals and "localhost" (and
  /// names under it, RFC 6761: 127.0.0.1 then ::1, as the family allows) are
  /// answered without a query. Answers are cached per (name, family) for
  /// their smallest TTL (capped by max_ttl; a TTL of 0 is not cached);
  /// failures are not cached. Throws dns_error (kind "dns") naming the host
  /// and c-ares' reason ("dns: lookup of 'nx.test' failed: Domain name not
  /// found"), also for an empty or malformed name and for a literal of the
  /// other family.
  task<std::vector<socket_address>> resolve(std::string host, std::uint16_t port,
                                            address_family family = address_family::any);

  [[nodiscard]] resolver_statistics statistics() const noexcept;

  struct impl;

 private:
  std::shared_ptr<impl> impl_;
};

}  // namespace spindle::net
