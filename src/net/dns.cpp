// resolver: c-ares driven by the loop's reactor, through the core's public
// API only (async_fd, spawn, yield).
//
// Overview. One c-ares channel per resolver. c-ares tells us, through its
// socket-state callback, which sockets to watch and in which direction; each
// watched direction gets a *pump* task that waits on an async_fd and calls
// ares_process_fd. c-ares' retransmission timeouts run on a timerfd, pumped
// the same way. A lookup is a `query` shared by its waiters (concurrent
// lookups of one name share it) and by the c-ares callback, which fills it,
// caches the answer and sets the query's event. The socket and timer side
// (watchers, pumps) is in dns_io.cpp; the shared declarations in dns_impl.hpp.
//
// Why a timerfd and not a loop timer for c-ares' timeouts: c-ares measures
// them on CLOCK_MONOTONIC itself (ares_timeout answers "in so much real
// time"). On a loop with a manual clock a loop timer would fire when the
// test moves the clock, not when c-ares' deadline passes (and an
// auto-advancing clock would jump to it at once, over and over, while a
// datagram is on its way). A timerfd on CLOCK_MONOTONIC agrees with c-ares
// exactly, and the loop's clock is left to what it is for here: TTLs and the
// caller's deadlines.
//
// Invariants:
// 1. A watcher (socket or timer) is alive while c-ares uses its descriptor.
//    c-ares reports a socket's end (both flags 0) *before* closing it, so the
//    pumps are cancelled (which removes their async_fd waits at once) and the
//    async_fd is destroyed (EPOLL_CTL_DEL) while the descriptor still exists.
// 2. A pump acts only while its watcher is open and its generation is
//    current; it checks after every suspension and after every
//    ares_process_fd (which may close its own socket). The resolver's state
//    (`impl`) outlives every open watcher: close() closes them all.
// 3. A pump waits for readiness only after a poll(2) of its descriptor says
//    "not ready". async_fd is edge-triggered, and c-ares 1.18 does not always
//    read until EAGAIN (over TCP it takes the length word and the message in
//    separate recv calls; a zero-length datagram stops its UDP loop), so
//    "ares_process_fd returned" does not mean "would block". The level check
//    also covers a pump started after its direction's edge was consumed.
// 4. The c-ares callback owns a shared_ptr to its query; a lookup that was
//    cancelled simply stops waiting. When no lookup waits for any query any
//    more, the queries are cancelled in c-ares (ares_cancel), which closes
//    its sockets: a cancelled lookup leaves no socket, timer or task behind.
// 5. Pumps are root tasks, so a loop's shutdown phase cancels them. A pump
//    that ended that way is respawned by the next lookup (ensure_pumps).
//
// Shutdown (~resolver):
// 1. mark the resolver closed (no new watcher, no cache writes);
// 2. ares_destroy: c-ares calls every query back with ARES_EDESTRUCTION
//    (their waiters wake and throw dns_error) and reports every socket closed
//    (their pumps are cancelled, their async_fds destroyed);
// 3. close the watchers c-ares did not report, then the timer's.
// Lookups still suspended keep the `impl` alive through their shared_ptr,
// but touch neither c-ares nor a watcher again.

#include "spindle/net/dns.hpp"

#include <ares.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <list>
#include <optional>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>

#include "dns_impl.hpp"
#include "dns_names.hpp"
#include "spindle/async_fd.hpp"
#include "spindle/cancel_scope.hpp"
#include "spindle/event.hpp"
#include "spindle/join_handle.hpp"
#include "spindle/sleep.hpp"

namespace spindle::net {

namespace {

using dns_detail::query;
using dns_detail::read_dir;
using dns_detail::watcher;
using dns_detail::write_dir;

using dns_names::fail;
using dns_names::invalid_name;
using dns_names::is_localhost;
using dns_names::lower;
using dns_names::printable;

bool family_matches(const socket_address& a, address_family f) noexcept {
  return f == address_family::any ||
         (f == address_family::ipv4 ? a.family() == AF_INET : a.family() == AF_INET6);
}

int ares_family(address_family f) noexcept {
  switch (f) {
    case address_family::ipv4: return AF_INET;
    case address_family::ipv6: return AF_INET6;
    case address_family::any: break;
  }
  return AF_UNSPEC;
}

std::vector<socket_address> with_port(std::vector<socket_address> v, std::uint16_t port) {
  for (auto& a : v) a.set_port(port);
  return v;
}

void init_library_once() {
  // c-ares asks for one global init before the first channel; a function-local
  // static makes it once and thread-safe. Never cleaned up (other channels,
  // on other loops, may live until exit).
  static const int status = ares_library_init(ARES_LIB_INIT_ALL);
  if (status != ARES_SUCCESS)
    throw dns_error(std::string("dns: ares_library_init failed: ") + ares_strerror(status));
}

}  // namespace

namespace {
struct callback_arg {
  resolver::impl* owner;
  std::shared_ptr<query> q;
};
}  // namespace

void resolver::impl::open() {
  init_library_once();
  if (opts.tries < 1) throw usage_error("resolver_options::tries must be at least 1");
  if (opts.query_timeout <= std::chrono::milliseconds::zero()) {
    throw usage_error("resolver_options::query_timeout must be positive");
  }
  ares_options o{};
  int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
  o.sock_state_cb = &on_sock_state;
  o.sock_state_cb_data = this;
  o.timeout = static_cast<int>(std::min<std::chrono::milliseconds::rep>(opts.query_timeout.count(), INT_MAX));
  o.tries = opts.tries;
  char dns_only[] = "b";
  if (!opts.servers.empty()) {
    // Explicit servers: ask them about exactly the name given. The search
    // list and /etc/hosts belong to the system's configuration, which the
    // caller has just set aside (and a test's names must not be looked up
    // under the machine's search domains or shadowed by its hosts file).
    // NOSEARCH covers ares_search; ares_getaddrinfo (1.18) looks only at the
    // domain list, so that is set to empty as well.
    mask |= ARES_OPT_FLAGS | ARES_OPT_DOMAINS | ARES_OPT_LOOKUPS;
    o.flags = ARES_FLAG_NOSEARCH;
    o.domains = nullptr;
    o.ndomains = 0;
    o.lookups = dns_only;
  }
  int status = ares_init_options(&channel, &o, mask);
  if (status != ARES_SUCCESS) {
    channel = nullptr;
    throw dns_error(std::string("dns: cannot create a resolver: ") + ares_strerror(status));
  }
  if (!opts.servers.empty()) {
    status = ares_set_servers_ports_csv(channel, opts.servers.c_str());
    if (status != ARES_SUCCESS) {
      throw dns_error("dns: invalid servers '" + printable(opts.servers) + "': " + ares_strerror(status));
    }
  }
  int tfd = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (tfd < 0) throw system_error("timerfd_create", errno);
  timer = std::make_shared<watcher>(watcher{this, tfd, true, nullptr, false, {}});
  try {
    timer->io = std::make_unique<async_fd>(loop, tfd);
  } catch (...) {
    ::close(tfd);
    timer.reset();
    throw;
  }
}

void resolver::impl::close() noexcept {
  if (closed) return;
  closed = true;
  if (channel != nullptr) {
    cancelling = true;
    ares_destroy(std::exchange(channel, nullptr));
    cancelling = false;
  }
  for (auto& [fd, w] : sockets) close_watcher(*w);
  sockets.clear();
  pending.clear();
  if (timer) {
    close_watcher(*timer);
    ::close(timer->fd);
    timer.reset();
  }
}

void resolver::impl::report_failure(const char* where) noexcept {
  try {
    loop.report({diagnostic::kind::callback_failure,
                 loop.name(),
                 "dns resolver",
                 {},
                 std::string("exception in the resolver's ") + where,
                 std::current_exception()});
  } catch (...) {
    // Reporting is best effort inside a C callback; nothing may escape.
  }
}

std::shared_ptr<query> resolver::impl::start_query(const std::string& host, const std::string& key,
                                                   address_family family) {
  if (auto it = pending.find(key); it != pending.end()) return it->second;
  if (closed) fail(host, "the resolver is closed");
  ensure_pumps();
  auto q = std::make_shared<query>();
  q->key = key;
  auto arg = std::make_unique<callback_arg>(callback_arg{this, q});
  pending.emplace(key, q);
  ++stats.queries;
  ares_addrinfo_hints hints{};
  hints.ai_family = ares_family(family);
  // The callback may run before ares_getaddrinfo returns (hosts file, an
  // immediate send failure): the query is in `pending` already, and the
  // waiter finds its event set.
  ares_getaddrinfo(channel, host.c_str(), nullptr, &hints, &on_addrinfo, arg.release());
  update_timer();
  return q;
}

void resolver::impl::complete(query& q, int status, const ares_addrinfo* res) {
  if (auto it = pending.find(q.key); it != pending.end() && it->second.get() == &q) pending.erase(it);
  q.status = status;
  if (status == ARES_SUCCESS && res != nullptr) {
    int ttl = INT_MAX;
    for (const ares_addrinfo_node* n = res->nodes; n != nullptr; n = n->ai_next) {
      socket_address a = socket_address::from(n->ai_addr, static_cast<socklen_t>(n->ai_addrlen));
      if (a.empty()) continue;
      q.addresses.push_back(a);
      ttl = std::min(ttl, n->ai_ttl);
    }
    // The chain expires with its shortest link.
    for (const ares_addrinfo_cname* c = res->cnames; c != nullptr; c = c->next) ttl = std::min(ttl, c->ttl);
    if (q.addresses.empty()) {
      q.status = ARES_ENODATA;
    } else if (!cancelling && !closed) {
      duration d = std::min<duration>(std::chrono::seconds(std::max(ttl, 0)), opts.max_ttl);
      cache_store(q.key, q.addresses, d);
    }
  } else if (status == ARES_SUCCESS) {
    q.status = ARES_ENODATA;
  }
  q.done.set();
}

void resolver::impl::on_addrinfo(void* arg, int status, int /*timeouts*/, ares_addrinfo* res) noexcept {
  std::unique_ptr<callback_arg> a(static_cast<callback_arg*>(arg));
  try {
    a->owner->complete(*a->q, status, res);
  } catch (...) {
    a->owner->report_failure("answer callback");
    a->q->status = ARES_ENOMEM;
    a->q->addresses.clear();
    a->q->done.set();
  }
  if (res != nullptr) ares_freeaddrinfo(res);
}

void resolver::impl::waiter_left() noexcept {
  --waiters;
  // Invariant 4: nobody waits for any query any more; stop them all.
  if (waiters == 0 && !pending.empty() && channel != nullptr) {
    cancelling = true;
    ares_cancel(channel);
    cancelling = false;
    try {
      update_timer();
    } catch (...) {
      report_failure("timer update");
    }
  }
}

resolver::resolver(event_loop& loop, resolver_options opts)
    : impl_(std::make_shared<impl>(loop, std::move(opts))) {
  impl_->check_thread("resolver::resolver");
  impl_->open();
}

resolver::~resolver() { impl_->close(); }

task<std::vector<socket_address>> resolver::resolve(std::string host, std::uint16_t port,
                                                    address_family family) {
  // The frame holds the state: the resolver may be destroyed while this
  // lookup is suspended (it then fails with c-ares' EDESTRUCTION).
  const std::shared_ptr<impl> self = impl_;
  self->check_thread("resolver::resolve");
  ++self->stats.lookups;
  // A cancellation point on every path, also those answered at once
  // (literals, the cache).
  check_cancelled();

  if (auto literal = socket_address::parse(host, port)) {
    ++self->stats.literal;
    if (!family_matches(*literal, family)) {
      ++self->stats.failures;
      fail(host, literal->is_v6() ? "an IPv6 literal, but IPv4 was asked for"
                                  : "an IPv4 literal, but IPv6 was asked for");
    }
    co_return std::vector<socket_address>{*literal};
  }
  if (auto why = invalid_name(host)) {
    ++self->stats.failures;
    fail(host, *why);
  }
  if (is_localhost(host)) {
    ++self->stats.literal;
    std::vector<socket_address> out;
    if (family != address_family::ipv6) out.push_back(*socket_address::parse("127.0.0.1", port));
    if (family != address_family::ipv4) out.push_back(*socket_address::parse("::1", port));
    co_return out;
  }

  std::string key = lower(host);
  if (key.back() == '.') key.pop_back();
  key += '/';
  key += static_cast<char>('0' + static_cast<int>(family));
  if (auto hit = self->cache_find(key)) {
    ++self->stats.cache_hits;
    co_return with_port(std::move(*hit), port);
  }

  std::shared_ptr<query> q = self->start_query(host, key, family);
  {
    struct waiting {
      impl& self;
      query& q;
      waiting(impl& s, query& qq) : self(s), q(qq) {
        ++q.waiters;
        ++self.waiters;
      }
      ~waiting() {
        --q.waiters;
        self.waiter_left();
      }
      waiting(const waiting&) = delete;
      waiting& operator=(const waiting&) = delete;
    } guard(*self, *q);
    co_await q->done.wait();
  }
  if (q->status != ARES_SUCCESS) {
    ++self->stats.failures;
    fail(host, ares_strerror(q->status));
  }
  co_return with_port(q->addresses, port);
}

resolver_statistics resolver::statistics() const noexcept {
  resolver_statistics s = impl_->stats;
  s.in_flight = impl_->pending.size();
  s.cached_names = impl_->cache.size();
  return s;
}

}  // namespace spindle::net
