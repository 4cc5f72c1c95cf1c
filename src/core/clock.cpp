#include "spindle/clock.hpp"

namespace spindle {

void manual_clock::bump(time_point t) noexcept {
  duration::rep want = t.time_since_epoch().count();
  duration::rep cur = now_.load(std::memory_order_relaxed);
  // Monotonic: only ever move forward, even with concurrent advancers.
  // release: publishes the new time (see now()).
  while (cur < want &&
         !now_.compare_exchange_weak(cur, want, std::memory_order_release, std::memory_order_relaxed)) {
  }
}

void manual_clock::set(time_point t) {
  bump(t);
  std::vector<std::function<void()>> wake;
  {
    // The lock covers only the copy; callbacks run unlocked so that a loop's
    // wake-up (which may take the loop's own locks) can never deadlock here.
    std::lock_guard lock(mutex_);
    wake.reserve(subscribers_.size());
    for (auto& [token, fn] : subscribers_) wake.push_back(fn);
  }
  for (auto& fn : wake) fn();
}

std::size_t manual_clock::subscribe(std::function<void()> fn) {
  std::lock_guard lock(mutex_);
  std::size_t token = next_token_++;
  subscribers_.emplace_back(token, std::move(fn));
  return token;
}

void manual_clock::unsubscribe(std::size_t token) noexcept {
  std::lock_guard lock(mutex_);
  std::erase_if(subscribers_, [token](const auto& s) { return s.first == token; });
}

}  // namespace spindle
