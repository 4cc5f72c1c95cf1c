// http::fetch_limits (include/spindle/http/fetch.hpp): per-host and rate
// limits shared by fetchers on several loops (spindle fetch --loops N).

#include <algorithm>
#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "spindle/event.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/http/fetch.hpp"
#include "spindle/sleep.hpp"

namespace spindle::http {

// The shared limits. A slot's waiter is queued (FIFO per origin) under the
// mutex and suspended on its own loop's event; a release hands the slot
// over to the first waiter (the count stays) and sets its event, directly
// on the waiter's own loop or through its call_soon_threadsafe. The rate is
// a token bucket with reservations: a taker that finds no token takes one
// anyway (the bucket goes into debt) and sleeps until it would have been
// there, so the takers of all loops together are spaced by 1/rate.
struct fetch_limits::state {
  struct waiter {
    event_loop* loop = nullptr;
    event ready{"fetch per-host (shared)"};  // touched on `loop` only
    bool granted = false;                    // under the mutex
  };
  struct origin_slots {
    std::size_t in_use = 0;
    std::deque<std::shared_ptr<waiter>> waiting;
  };

  std::size_t per_host = 0;
  double rate = 0;
  double burst = 1;
  mutable std::mutex m;
  std::unordered_map<std::string, origin_slots> hosts;
  double tokens = 0;
  std::chrono::steady_clock::time_point last{};
  bool started = false;

  // A slot now (nullptr), or the queued waiter to wait on.
  std::shared_ptr<waiter> take_or_queue(const std::string& origin) {
    std::lock_guard<std::mutex> lock(m);
    origin_slots& h = hosts[origin];
    if (h.in_use < per_host && h.waiting.empty()) {
      ++h.in_use;
      return nullptr;
    }
    auto w = std::make_shared<waiter>();
    w->loop = event_loop::current();
    h.waiting.push_back(w);
    return w;
  }

  // A cancelled waiter: out of the queue, or, when the slot was handed to
  // it meanwhile, true (the caller passes the slot on).
  bool abandon(const std::string& origin, const std::shared_ptr<waiter>& w) {
    std::lock_guard<std::mutex> lock(m);
    if (w->granted) return true;
    auto it = hosts.find(origin);
    if (it != hosts.end()) {
      auto& q = it->second.waiting;
      q.erase(std::remove(q.begin(), q.end(), w), q.end());
      if (it->second.in_use == 0 && q.empty()) hosts.erase(it);
    }
    return false;
  }

  void release(const std::string& origin) noexcept {
    std::shared_ptr<waiter> next;
    {
      std::lock_guard<std::mutex> lock(m);
      auto it = hosts.find(origin);
      if (it == hosts.end()) return;
      origin_slots& h = it->second;
      if (!h.waiting.empty()) {
        next = std::move(h.waiting.front());
        h.waiting.pop_front();
        next->granted = true;  // the slot passes on: in_use stays
      } else if (--h.in_use == 0) {
        hosts.erase(it);
      }
    }
    if (!next) return;
    if (event_loop::current() == next->loop) {
      next->ready.set();
    } else {
      next->loop->call_soon_threadsafe([next] { next->ready.set(); });
    }
  }

  // How long the taker of a token must wait (zero or less: not at all).
  duration reserve() {
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard<std::mutex> lock(m);
    if (!started) {
      started = true;
      tokens = burst;
      last = now;
    } else if (now > last) {
      tokens = std::min(burst, tokens + std::chrono::duration<double>(now - last).count() * rate);
      last = now;
    }
    tokens -= 1;
    if (tokens >= 0) return duration::zero();
    return std::chrono::duration_cast<duration>(std::chrono::duration<double>(-tokens / rate));
  }

  void give_back_token() {
    std::lock_guard<std::mutex> lock(m);
    tokens = std::min(burst, tokens + 1);
  }
};

fetch_limits::fetch_limits(std::size_t per_host, double rate) : s_(std::make_shared<state>()) {
  s_->per_host = per_host;
  s_->rate = rate > 0 ? rate : 0;
  s_->burst = std::max(1.0, s_->rate / 10);
}
fetch_limits::~fetch_limits() = default;
std::size_t fetch_limits::per_host() const noexcept { return s_->per_host; }
double fetch_limits::rate() const noexcept { return s_->rate; }

task<void> fetch_limits::acquire_host(std::string origin) {
  if (s_->per_host == 0) co_return;
  std::shared_ptr<state> s = s_;
  std::shared_ptr<state::waiter> w = s->take_or_queue(origin);
  if (!w) co_return;
  std::exception_ptr cancelled;
  try {
    co_await w->ready.wait();
  } catch (...) {
    cancelled = std::current_exception();
  }
  if (cancelled) {
    if (s->abandon(origin, w)) s->release(origin);
    std::rethrow_exception(cancelled);
  }
}

void fetch_limits::release_host(const std::string& origin) noexcept {
  if (s_->per_host != 0) s_->release(origin);
}

task<void> fetch_limits::acquire_rate() {
  if (s_->rate <= 0) co_return;
  std::shared_ptr<state> s = s_;
  const duration wait = s->reserve();
  if (wait <= duration::zero()) co_return;
  std::exception_ptr cancelled;
  try {
    co_await sleep_for(wait);
  } catch (...) {
    cancelled = std::current_exception();
  }
  if (cancelled) {
    s->give_back_token();
    std::rethrow_exception(cancelled);
  }
}

std::size_t fetch_limits::in_use(const std::string& origin) const {
  std::lock_guard<std::mutex> lock(s_->m);
  auto it = s_->hosts.find(origin);
  return it == s_->hosts.end() ? 0 : it->second.in_use;
}

}  // namespace spindle::http
