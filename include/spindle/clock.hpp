#pragma once
/// \file
/// The loop's time source: the steady clock by default, or a manual clock
/// that tests advance by hand so that timer tests never sleep.

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <type_traits>
#include <vector>

namespace spindle {

/// Durations and instants on the loop's clock. The epoch is steady_clock's,
/// so deadlines computed from std::chrono::steady_clock::now() work as is.
using duration = std::chrono::nanoseconds;
using time_point = std::chrono::time_point<std::chrono::steady_clock, duration>;

/// "No deadline": a duration that never passes. Every API that takes a
/// duration accepts it (time arithmetic saturates; docs/adr/0006).
inline constexpr duration forever = duration::max();

/// `d` in `To`, saturating at To::max() and To::min() instead of overflowing
/// (milliseconds::max() in nanoseconds is nanoseconds::max()).
template <class To, class Rep, class Period>
[[nodiscard]] constexpr To saturating_cast(std::chrono::duration<Rep, Period> d) noexcept {
  if constexpr (std::is_same_v<std::chrono::duration<Rep, Period>, To>) {
    return d;
  } else {
    using wide = std::chrono::duration<long double, typename To::period>;
    const long double v = std::chrono::duration_cast<wide>(d).count();
    if (v >= static_cast<long double>(To::max().count())) return To::max();
    if (v <= static_cast<long double>(To::min().count())) return To::min();
    return std::chrono::duration_cast<To>(d);
  }
}

/// `t + d`, saturating at the time point's max() and min() instead of
/// overflowing: `now() + forever` is "never", `now() + duration::min()` is
/// long past. Every place where a duration meets a time point uses it.
template <class Clock, class Dur, class Rep, class Period>
[[nodiscard]] constexpr std::chrono::time_point<Clock, Dur> saturating_add(
    std::chrono::time_point<Clock, Dur> t, std::chrono::duration<Rep, Period> d) noexcept {
  using tp = std::chrono::time_point<Clock, Dur>;
  const Dur step = saturating_cast<Dur>(d);
  if (step >= Dur::zero()) return t > tp::max() - step ? tp::max() : t + step;
  return t < tp::min() - step ? tp::min() : t + step;
}

/// A source of time for an event_loop.
///
/// **Thread safety:** now() is safe to call from any thread.
/// **Cancellation:** not applicable.
class clock {
 public:
  virtual ~clock() = default;
  [[nodiscard]] virtual time_point now() const noexcept = 0;
  /// True when time moves only when told to (manual_clock).
  [[nodiscard]] virtual bool is_manual() const noexcept { return false; }
  /// For a manual clock in auto-advance mode: called by an idle loop with
  /// the earliest timer deadline; moves time there. Returns false when the
  /// clock does not auto-advance.
  virtual bool advance_idle(time_point) noexcept { return false; }
  /// Registers a callback run after every manual advance (used by loops to
  /// wake up and look at their timers). Returns a token for unsubscribe.
  virtual std::size_t subscribe(std::function<void()>) { return 0; }
  virtual void unsubscribe(std::size_t) noexcept {}
};

/// The default clock: std::chrono::steady_clock.
class steady_clock final : public clock {
 public:
  [[nodiscard]] time_point now() const noexcept override {
    return std::chrono::time_point_cast<duration>(std::chrono::steady_clock::now());
  }
};

/// A clock that moves only when advanced. With `mode::auto_advance`, a loop
/// that has nothing to run and no I/O ready jumps the clock straight to its
/// next timer (like Tokio's paused time), so a test of a 10-minute schedule
/// takes microseconds and never depends on the machine's speed.
///
/// **Thread safety:** all methods are safe from any thread; advance() wakes
/// the loops that use the clock.
/// **Cancellation:** not applicable.
class manual_clock final : public clock {
 public:
  enum class mode { manual, auto_advance };

  explicit manual_clock(mode m = mode::manual, time_point start = time_point{std::chrono::hours(1)})
      : now_(start.time_since_epoch().count()), auto_(m == mode::auto_advance) {}

  [[nodiscard]] time_point now() const noexcept override {
    // acquire: pairs with the release in set(); a reader that sees the new
    // time also sees everything the advancing thread did before it.
    return time_point{duration{now_.load(std::memory_order_acquire)}};
  }
  [[nodiscard]] bool is_manual() const noexcept override { return true; }

  /// Moves time forward by `d` (never backwards) and wakes subscribed loops.
  void advance(duration d) { set(saturating_add(now(), d)); }
  /// Moves time to `t` if it is later than now.
  void advance_to(time_point t) { set(t); }

  bool advance_idle(time_point t) noexcept override {
    if (!auto_) return false;
    bump(t);
    return true;
  }
  std::size_t subscribe(std::function<void()> fn) override;
  void unsubscribe(std::size_t token) noexcept override;

 private:
  void set(time_point t);
  void bump(time_point t) noexcept;

  std::atomic<duration::rep> now_;
  bool auto_;
  std::mutex mutex_;  // guards subscribers_ only, never held across a callback's own locks
  std::vector<std::pair<std::size_t, std::function<void()>>> subscribers_;
  std::size_t next_token_ = 1;
};

}  // namespace spindle
