// http::client's connection pool: see client_pool.hpp.

#include "client_pool.hpp"

#include <algorithm>

namespace spindle::http::detail {

connection_pool::~connection_pool() {
  for (auto& [key, p] : pools_) drop_idle(p);
}

void connection_pool::refresh(origin_pool& p) noexcept {
  const bool busy = p.open > p.idle.size() || p.waiting > 0;
  if (busy == p.busy) return;
  p.busy = busy;
  if (busy) {
    if (!p.active) {
      p.active = true;
      ++active_origins_;
    }
    return;
  }
  // Still counted for a while (cooling): an origin whose requests paused
  // for a moment (a slow server, a busy CPU) keeps its share, so that
  // demand swinging between origins does not move connections back and
  // forth.
  p.cooled_at = loop_.coarse_now();
  if (!p.listed) {
    p.listed = true;
    cooling_.push_back(&p);
  }
}

void connection_pool::expire_cooling() noexcept {
  const time_point now = loop_.coarse_now();
  while (!cooling_.empty()) {
    origin_pool& q = *cooling_.front();
    if (!q.busy && now - q.cooled_at < active_grace) break;  // (in list order: conservative)
    cooling_.pop_front();
    q.listed = false;
    if (!q.busy && q.active) {
      q.active = false;
      --active_origins_;
    }
  }
}

void connection_pool::uncount(origin_pool& p) noexcept {
  --p.open;
  --total_open_;
  refresh(p);
}

void connection_pool::unlink(pooled_connection& c) noexcept {
  (c.lru_prev != nullptr ? c.lru_prev->lru_next : lru_head_) = c.lru_next;
  (c.lru_next != nullptr ? c.lru_next->lru_prev : lru_tail_) = c.lru_prev;
  c.lru_prev = c.lru_next = nullptr;
  --idle_count_;
}

void connection_pool::push_idle(std::unique_ptr<pooled_connection> c) {
  origin_pool& p = *c->pool;
  c->idle_since = loop_.coarse_now();
  c->reader.next();
  c->lru_prev = lru_tail_;
  c->lru_next = nullptr;
  (lru_tail_ != nullptr ? lru_tail_->lru_next : lru_head_) = c.get();
  lru_tail_ = c.get();
  ++idle_count_;
  p.idle.push_back(std::move(c));
  refresh(p);
}

std::unique_ptr<pooled_connection> connection_pool::pop_idle_back(origin_pool& p) noexcept {
  std::unique_ptr<pooled_connection> c = std::move(p.idle.back());
  p.idle.pop_back();
  unlink(*c);
  return c;
}

origin_pool& connection_pool::pool_for(const url& u) {
  sweep();
  if (last_pool_ != nullptr && last_port_ == u.port && last_host_ == u.host && last_scheme_ == u.scheme)
    return *last_pool_;
  origin_pool& p = pools_[u.origin()];
  last_pool_ = &p;
  last_scheme_ = u.scheme;
  last_host_ = u.host;
  last_port_ = u.port;
  return p;
}

// Origins with nothing open and nobody waiting are forgotten now and then,
// so a run over millions of hosts keeps a bounded map.
void connection_pool::sweep() {
  if (pools_.size() < 256 || ++lookups_ % 1024 != 0) return;
  last_pool_ = nullptr;
  std::erase_if(pools_, [](const auto& kv) {
    const origin_pool& q = kv.second;
    return q.open == 0 && q.idle.empty() && q.waiting == 0 && !q.active && !q.listed;
  });
}

std::unique_ptr<pooled_connection> connection_pool::take_idle(origin_pool& p) {
  while (!p.idle.empty()) {
    std::unique_ptr<pooled_connection> c = pop_idle_back(p);
    if (c->io.stale() || loop_.coarse_now() - c->idle_since > opts_.idle_timeout) {
      c->io.close();
      uncount(p);
      continue;
    }
    refresh(p);
    return c;
  }
  return nullptr;
}

std::size_t connection_pool::fair_share(const origin_pool& p) noexcept {
  expire_cooling();
  const std::size_t active = active_origins_ + (p.active ? 0 : 1);
  return std::max<std::size_t>(1, opts_.max_connections_total / active);
}

// Closes an idle connection of another origin to make room for `p`: the
// least recently used of an origin with no requests (inactive) or above its
// fair share; failing that, when `p` has no connection at all, the least
// recently used of any origin (an origin must always be able to make
// progress). Taking from origins at or below their share would only move
// the shortage around: each eviction makes another origin evict in turn.
bool connection_pool::evict_for(const origin_pool& p) {
  const std::size_t share = fair_share(p);
  pooled_connection* victim = nullptr;
  std::size_t scanned = 0;
  for (pooled_connection* c = lru_head_; c != nullptr && scanned < max_eviction_scan; c = c->lru_next) {
    ++scanned;
    const origin_pool& q = *c->pool;
    if (!q.active || q.open > share) {
      victim = c;
      break;
    }
  }
  if (victim == nullptr && p.open == 0) victim = lru_head_;
  if (victim == nullptr) return false;
  // The first of its origin on the list: its origin's oldest idle connection.
  origin_pool& q = *victim->pool;
  std::unique_ptr<pooled_connection> c = std::move(q.idle.front());
  q.idle.pop_front();
  unlink(*c);
  c->io.close();
  uncount(q);
  ++stats_.evicted;
  return true;
}

bool connection_pool::take_slot(origin_pool& p) {
  if (p.open >= opts_.max_connections_per_origin) return false;
  if (total_open_ >= opts_.max_connections_total) {
    // Full: room is made only for an origin below its fair share (an
    // origin at its share waits for its own connections: no churn).
    if (p.open >= fair_share(p) || !evict_for(p)) return false;
  }
  ++p.open;
  ++total_open_;
  refresh(p);
  return true;
}

void connection_pool::closed(origin_pool& p) {
  uncount(p);
  dispatch();
}

void connection_pool::wait(pool_waiter& w) {
  // take_idle may have closed stale connections: their slots may serve
  // earlier waiters first (this one included, in its turn).
  waiting_.push_back(&w);
  ++w.pool->waiting;
  refresh(*w.pool);
  dispatch();
}

void connection_pool::abandon(pool_waiter& w) {
  if (auto it = std::find(waiting_.begin(), waiting_.end(), &w); it != waiting_.end()) {
    waiting_.erase(it);
    --w.pool->waiting;
    refresh(*w.pool);
  }
  if (w.handed) release(std::move(w.handed), true);
  if (w.slot) {
    w.slot = false;
    closed(*w.pool);
  }
}

void connection_pool::hand(pool_waiter& w, std::unique_ptr<pooled_connection> c) {
  origin_pool& p = *w.pool;
  if (c) {
    w.handed = std::move(c);
  } else {
    w.slot = true;
  }
  --p.waiting;
  refresh(p);
  w.ready.set();
}

void connection_pool::release(std::unique_ptr<pooled_connection> c, bool reusable) {
  origin_pool& p = *c->pool;
  if (!reusable || !c->io.is_open()) {
    c->io.close();
    closed(p);
    return;
  }
  if (!waiting_.empty()) {
    // The oldest waiter is of another origin that is below its fair share
    // and blocked by the total limit: the room this connection takes is
    // what it waits for (without this, a busy origin would keep every
    // connection it is handed and starve the others).
    // (Only from an origin above its share, or for one with nothing at
    // all: else the shortage just moves from one origin to the next.)
    origin_pool& q = *waiting_.front()->pool;
    if (&q != &p && total_open_ >= opts_.max_connections_total && q.open < fair_share(q) &&
        q.open < opts_.max_connections_per_origin && (p.open > fair_share(p) || q.open == 0)) {
      c->io.close();
      closed(p);
      return;
    }
  }
  if (p.waiting > 0) {
    // Straight to the oldest waiter of the same origin.
    for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
      if ((*it)->pool != &p) continue;
      pool_waiter& w = **it;
      waiting_.erase(it);
      c->reader.next();
      hand(w, std::move(c));
      return;
    }
  }
  push_idle(std::move(c));
  if (!waiting_.empty()) dispatch();
}

// Hands whatever is free to the waiters that can use it, oldest first.
void connection_pool::dispatch() {
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    pool_waiter& w = **it;
    origin_pool& p = *w.pool;
    std::unique_ptr<pooled_connection> c = take_idle(p);
    if (!c && !take_slot(p)) {
      ++it;
      continue;
    }
    it = waiting_.erase(it);
    hand(w, std::move(c));
  }
}

void connection_pool::drop_idle(origin_pool& p) noexcept {
  while (!p.idle.empty()) {
    std::unique_ptr<pooled_connection> c = pop_idle_back(p);
    c->io.close();
    uncount(p);
  }
}

void connection_pool::close_idle(origin_pool& p) {
  drop_idle(p);
  dispatch();  // freed slots go to waiters, if any
}

void connection_pool::close_idle() {
  for (auto& [key, p] : pools_) drop_idle(p);
  dispatch();
}

}  // namespace spindle::http::detail
