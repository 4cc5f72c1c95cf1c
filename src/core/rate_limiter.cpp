#include "spindle/rate_limiter.hpp"

#include <cmath>

#include "spindle/event_loop.hpp"
#include "spindle/sleep.hpp"

namespace spindle {

rate_limiter::rate_limiter(double rate_per_second, double burst, std::string name)
    : name_(std::move(name)), rate_(rate_per_second), burst_(burst < 1 ? 1 : burst), tokens_(burst_) {
  if (!(rate_ > 0)) throw usage_error("rate_limiter '" + name_ + "': rate must be positive");
}

void rate_limiter::refill(time_point now) {
  if (!started_) {
    started_ = true;
    last_ = now;
    return;
  }
  double add = std::chrono::duration<double>(now - last_).count() * rate_;
  last_ = now;
  tokens_ = std::min(burst_, tokens_ + add);
}

bool rate_limiter::try_acquire() {
  refill(detail::current_task("rate_limiter::try_acquire").loop().now());
  if (tokens_ < 1 || turn_.locked()) return false;
  tokens_ -= 1;
  ++acquired_;
  return true;
}

task<void> rate_limiter::acquire() {
  semaphore_permit turn = co_await turn_.scoped_lock();
  event_loop& loop = detail::current_task("rate_limiter::acquire").loop();
  refill(loop.now());
  if (tokens_ < 1) {
    ++delayed_;
    // Time until one whole token, rounded up to the next nanosecond.
    auto wait = std::chrono::duration<double>((1 - tokens_) / rate_);
    co_await sleep_for(std::chrono::ceil<duration>(wait));
    refill(loop.now());
    if (tokens_ < 1) tokens_ = 1;  // rounding: the wait was for exactly one token
  }
  tokens_ -= 1;
  ++acquired_;
}

rate_limiter_statistics rate_limiter::statistics() const {
  return {name_, rate_, burst_, tokens_, turn_.statistics().waiting, acquired_, delayed_};
}

}  // namespace spindle
