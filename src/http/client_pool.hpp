#pragma once
// http::client's connection pool (internal): HTTP/1 connections lent
// exclusively, one pool shared by every origin.
//
// Design
// ------
// Each origin (scheme, host, port) has an origin_pool: its idle
// connections (most recently used at the back) and counts of what is open
// and who waits. Idle connections of every origin are also on one intrusive
// list in the order they went idle, so the least recently used idle
// connection of the whole client is found in O(1).
//
// Two limits: max_connections_per_origin, and max_connections_total across
// origins. When the total is reached, a request for an origin with nothing
// idle of its own may close another origin's idle connection to open one,
// but only while its origin is below its fair share: max_connections_total
// divided by the active origins (those with a connection lent out or being
// made, or a request waiting, now or within the last 500 ms). At its share it waits for one of its own
// connections instead. The connection closed is the least recently used of
// an origin that is inactive or above its share (or, for an origin with no
// connection at all, of any origin): taking from an origin at its share
// would only move the shortage on. A released connection likewise goes to
// an older waiter of an origin below its share (closed, to make the room)
// only when its own origin is above its share or the other has nothing.
// This is what keeps a list
// of URLs round-robin over a few hosts from closing and reopening a
// connection per request (issue #14: 27,041 connections for 30,000 URLs
// over three origins before; about the window's size after).
//
// Waiters are served in arrival order; a released connection goes first to
// the oldest waiter of its own origin, then whatever is free goes to the
// others (dispatch). What is handed over cannot be taken by anyone else in
// between.
//
// Invariants
//  - open counts idle + lent + being connected (a slot), per origin and in
//    total_open; an origin_pool with open > 0 or waiting > 0 is never swept.
//  - A connection is on the idle list exactly while it is in its origin's
//    idle deque.
//  - `busy` is true exactly when open > idle.size() or waiting > 0.
//    `active` is true while busy and for active_grace after (expired
//    lazily, when a fair share is computed); active_origins counts the
//    origins where it is. A pool that is active or on the cooling list is
//    never swept.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <string>

#include "spindle/event.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/http/client.hpp"
#include "spindle/http/connection.hpp"

namespace spindle::http::detail {

struct origin_pool;

// One pooled connection.
struct pooled_connection {
  stream io;
  message_reader reader{message_parser::kind::response};
  origin_pool* pool = nullptr;  // a pool with a connection counted in it is never swept
  std::string wire;             // the request being sent (its capacity kept across requests)
  time_point idle_since{};
  pooled_connection* lru_prev = nullptr;  // on the pool's idle list while idle
  pooled_connection* lru_next = nullptr;
};

struct origin_pool {
  std::deque<std::unique_ptr<pooled_connection>> idle;  // most recently used at the back
  std::size_t open = 0;
  std::size_t waiting = 0;  // acquirers of this origin in the wait list
  bool busy = false;        // a connection lent out or being made, or a request waiting
  bool active = false;      // counted in the active origins: busy, or not busy for long
  bool listed = false;      // on the cooling list
  time_point cooled_at{};   // when it stopped being busy
};

// A task waiting for a connection: what frees up is handed to it directly,
// an idle connection of its origin or a slot (counted in open) to connect a
// new one.
struct pool_waiter {
  explicit pool_waiter(origin_pool& p) : pool(&p) {}
  origin_pool* pool;  // never swept while it counts this waiter
  event ready{"http pool wait"};
  std::unique_ptr<pooled_connection> handed;
  bool slot = false;
};

class connection_pool {
 public:
  connection_pool(event_loop& loop, const client_options& opts, client_statistics& stats)
      : loop_(loop), opts_(opts), stats_(stats) {}
  ~connection_pool();
  connection_pool(const connection_pool&) = delete;
  connection_pool& operator=(const connection_pool&) = delete;

  // The origin's pool (the last one is found again without building its key).
  origin_pool& pool_for(const url& u);
  // A live idle connection of `p`, if one is pooled (stale or expired ones are closed).
  std::unique_ptr<pooled_connection> take_idle(origin_pool& p);
  // Room for one more connection of `p` (counted in open), within the
  // per-origin limit and, by the fair-share rule, the total one.
  bool take_slot(origin_pool& p);
  // A new connection made on a slot of `p` joins the pool's accounting.
  void adopt(pooled_connection& c, origin_pool& p) noexcept { c.pool = &p; }
  // A slot of `p` (or a connection of it) closed: it may serve a waiter.
  void closed(origin_pool& p);
  // Queues `w` (its origin had neither an idle connection nor a slot).
  void wait(pool_waiter& w);
  // `w` gave up (cancelled): leaves the queue, passes on what it was handed.
  void abandon(pool_waiter& w);
  // A connection back from a request: pooled when `reusable` and open,
  // handed to a waiter of its origin first; closed otherwise.
  void release(std::unique_ptr<pooled_connection> c, bool reusable);
  // Closes the idle connections of `p`, or of every origin.
  void close_idle(origin_pool& p);
  void close_idle();

  [[nodiscard]] std::size_t open() const noexcept { return total_open_; }
  [[nodiscard]] std::size_t idle() const noexcept { return idle_count_; }
  [[nodiscard]] std::size_t waiting() const noexcept { return waiting_.size(); }

 private:
  void refresh(origin_pool& p) noexcept;
  void drop_idle(origin_pool& p) noexcept;
  void uncount(origin_pool& p) noexcept;
  void push_idle(std::unique_ptr<pooled_connection> c);
  std::unique_ptr<pooled_connection> pop_idle_back(origin_pool& p) noexcept;
  void unlink(pooled_connection& c) noexcept;
  bool evict_for(const origin_pool& p);
  // Idle connections looked at for a victim before giving up on fairness.
  static constexpr std::size_t max_eviction_scan = 256;
  [[nodiscard]] std::size_t fair_share(const origin_pool& p) noexcept;
  void expire_cooling() noexcept;
  // How long an origin whose requests stopped still counts as active.
  static constexpr duration active_grace = std::chrono::milliseconds(500);
  void dispatch();
  void hand(pool_waiter& w, std::unique_ptr<pooled_connection> c);
  void sweep();

  event_loop& loop_;
  const client_options& opts_;
  client_statistics& stats_;
  std::map<std::string, origin_pool> pools_;
  std::size_t total_open_ = 0;
  std::size_t idle_count_ = 0;
  std::size_t active_origins_ = 0;
  std::list<pool_waiter*> waiting_;   // FIFO
  std::deque<origin_pool*> cooling_;  // origins that stopped being busy, oldest first
  std::uint64_t lookups_ = 0;
  pooled_connection* lru_head_ = nullptr;  // least recently used idle connection
  pooled_connection* lru_tail_ = nullptr;
  origin_pool* last_pool_ = nullptr;
  std::string last_scheme_, last_host_;
  std::uint16_t last_port_ = 0;
};

}  // namespace spindle::http::detail
