#pragma once
// The resolver's internals, shared by dns.cpp (lookups, cache, set-up and
// shutdown) and dns_io.cpp (the c-ares sockets and timer, driven by pump
// tasks). See dns.cpp for the overview and the invariants.

#include <ares.h>

#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "spindle/async_fd.hpp"
#include "spindle/event.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/join_handle.hpp"
#include "spindle/net/dns.hpp"

namespace spindle::net {

namespace dns_detail {

constexpr int read_dir = 0;
constexpr int write_dir = 1;
// ares_process_fd rounds a pump runs back to back before it lets the other
// ready tasks run (a socket that stays readable must not hold the loop).
constexpr int rounds_before_yield = 16;

// One getaddrinfo in flight: shared by the lookups waiting for it and by the
// c-ares callback.
struct query {
  std::string key;
  event done{"dns query"};
  int status = ARES_SUCCESS;
  std::vector<socket_address> addresses;  // port 0
  std::size_t waiters = 0;
};

// A descriptor c-ares asked us to watch (or the resolver's timerfd).
struct watcher {
  resolver::impl* owner;
  int fd;
  bool is_timer;
  std::unique_ptr<async_fd> io;
  bool closed = false;
  struct direction {
    bool wanted = false;
    std::uint64_t gen = 0;
    join_handle<void> pump;
  };
  direction dirs[2];

  [[nodiscard]] bool live(int d, std::uint64_t gen) const noexcept { return !closed && dirs[d].gen == gen; }
};

// Drives one direction of one watcher (dns_io.cpp).
task<void> pump(std::shared_ptr<watcher> param, int d, std::uint64_t gen);

}  // namespace dns_detail

struct resolver::impl {
  impl(event_loop& l, resolver_options o) : loop(l), opts(std::move(o)) {}
  ~impl() { close(); }
  impl(const impl&) = delete;
  impl& operator=(const impl&) = delete;

  event_loop& loop;
  resolver_options opts;
  ares_channel channel = nullptr;
  bool closed = false;
  // Set while ares_cancel/ares_destroy call queries back: an answer made of
  // whatever half of an A+AAAA pair had arrived must not be cached.
  bool cancelling = false;
  resolver_statistics stats;
  std::size_t waiters = 0;  // lookups waiting on any query

  std::unordered_map<std::string, std::shared_ptr<dns_detail::query>> pending;  // by cache key

  struct cache_entry {
    std::vector<socket_address> addresses;
    time_point expires;
    std::list<std::string>::iterator lru;
  };
  std::unordered_map<std::string, cache_entry> cache;
  std::list<std::string> lru;  // most recently used first

  std::unordered_map<int, std::shared_ptr<dns_detail::watcher>> sockets;
  std::shared_ptr<dns_detail::watcher> timer;

  void check_thread(const char* method) const {
    if (std::this_thread::get_id() != loop.owner_thread()) {
      throw wrong_thread_error(std::string(method) + ": a resolver belongs to the thread of event_loop '" +
                               loop.name() + "'");
    }
  }

  void open();
  void close() noexcept;

  // --- cache -------------------------------------------------------------
  std::optional<std::vector<socket_address>> cache_find(const std::string& key) {
    auto it = cache.find(key);
    if (it == cache.end()) return std::nullopt;
    if (loop.now() >= it->second.expires) {
      lru.erase(it->second.lru);
      cache.erase(it);
      return std::nullopt;
    }
    lru.splice(lru.begin(), lru, it->second.lru);
    return it->second.addresses;
  }

  void cache_store(const std::string& key, const std::vector<socket_address>& addresses, duration ttl) {
    if (opts.cache_capacity == 0 || ttl <= duration::zero()) return;
    auto [it, inserted] = cache.try_emplace(key);
    if (inserted) {
      lru.push_front(key);
      it->second.lru = lru.begin();
    } else {
      lru.splice(lru.begin(), lru, it->second.lru);
    }
    it->second.addresses = addresses;
    it->second.expires = saturating_add(loop.now(), ttl);
    while (cache.size() > opts.cache_capacity) {
      cache.erase(lru.back());
      lru.pop_back();
    }
  }

  // --- queries -----------------------------------------------------------
  std::shared_ptr<dns_detail::query> start_query(const std::string& host, const std::string& key,
                                                 address_family family);
  void complete(dns_detail::query& q, int status, const ares_addrinfo* res);
  void waiter_left() noexcept;

  // --- watchers and pumps ------------------------------------------------
  void on_socket_state(int fd, bool readable, bool writable);
  void set_wanted(const std::shared_ptr<dns_detail::watcher>& w, int d, bool wanted);
  void close_watcher(dns_detail::watcher& w) noexcept;
  void ensure_pumps();
  void on_ready(dns_detail::watcher& w, int d);
  void update_timer();
  void report_failure(const char* where) noexcept;

  // c-ares callbacks (C linkage conventions: they must not throw).
  static void on_sock_state(void* data, ares_socket_t fd, int readable, int writable) noexcept;
  static void on_addrinfo(void* arg, int status, int timeouts, ares_addrinfo* res) noexcept;
};

}  // namespace spindle::net
