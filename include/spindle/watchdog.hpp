#pragma once
/// \file
/// The stall watchdog: a monitor that notices when one step of a loop (one
/// task resumption or callback) holds the loop's thread longer than a
/// threshold, and names the culprit while it is happening.
///
/// Cost on the loop's hot path: a few relaxed stores per step (a step
/// counter and what is running) and one load after it; no clock read and no
/// syscall per step. The monitor samples; it never stops the loop.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <source_location>
#include <string>
#include <thread>
#include <vector>

#include "spindle/clock.hpp"

namespace spindle {

/// One stall report. Each stall gets two: `ongoing` from the monitor while
/// the step still holds the loop, then `ended` with the final duration.
struct stall_report {
  enum class phase : std::uint8_t { ongoing, ended };
  phase state = phase::ongoing;
  std::string loop;           ///< the loop's name
  std::uint64_t task_id = 0;  ///< the task's id (0: a plain callback)
  /// The task's name (ended reports; an ongoing report cannot read it
  /// safely from another thread, so it has `where` only).
  std::string task;
  std::source_location where;  ///< where the task was spawned
  duration held{};             ///< how long the step has held the loop (lower bound, see stall_monitor)
  /// One greppable line: `spindle: stall loop=api state=ongoing held_ms=112 task=#17 spawned=h.cpp:42 (fn)`
  [[nodiscard]] std::string to_string() const;
};

/// Called from the monitor's thread (ongoing) and from the loop's thread
/// (ended): must be thread-safe and quick.
using stall_handler = std::function<void(const stall_report&)>;

class stall_monitor;

/// Per-loop watchdog settings (event_loop::options::watchdog).
struct watchdog_options {
  /// A step longer than this is a stall; nullopt turns the watchdog off
  /// (a value of zero or less: every step counts).
  std::optional<duration> threshold = std::chrono::milliseconds(100);
  /// Where reports go; null: one line on stderr.
  stall_handler on_stall{};
  /// The monitor; null: the process's shared monitor thread.
  stall_monitor* monitor = nullptr;
};

namespace detail {
/// What a loop publishes for its monitor (written on the loop thread,
/// sampled by the monitor; see src/watchdog.cpp for the protocol).
struct watch_slot {
  static constexpr std::uint64_t idle_bit = 1;  // between batches: nothing to blame
  static constexpr std::uint64_t step = 2;      // the counter's unit
  std::atomic<std::uint64_t> seq{idle_bit};     // (step counter * step) | idle_bit
  std::atomic<std::uint64_t> task_id{0};
  std::atomic<std::source_location> where{};  // one pointer to static data: safe to copy anytime
  std::atomic<std::uint64_t> flagged_seq{0};  // set by the monitor on an ongoing report
  std::atomic<std::uint64_t> acked_seq{0};    // set by the loop when it reports the end
  std::atomic<std::int64_t> stall_start{0};   // monitor clock, ns since its epoch
  // Fixed at registration.
  std::string loop_name;
  duration threshold{};
  stall_handler handler;
  // Monitor-private (under the monitor's mutex).
  std::uint64_t last_seq = 0;
  std::int64_t first_seen = 0;
  bool reported = false;
  stall_report last_report;  // the ongoing report, for an end the loop did not report
};
}  // namespace detail

/// Samples the loops that run with a watchdog. The shared monitor runs on
/// its own thread, ticking every threshold/8 (between 1 ms and 50 ms) while
/// any watched loop runs, and sleeping otherwise. A monitor built on a
/// manual clock has no thread: tests call tick() and move the clock, which
/// makes stall detection deterministic.
///
/// Durations are measured from the first tick that saw the step running,
/// so they are lower bounds, short by at most one tick.
///
/// **Thread safety:** all members are thread-safe.
class stall_monitor {
 public:
  /// A manual monitor on `c` (must outlive it): no thread; call tick().
  explicit stall_monitor(spindle::clock& c);
  ~stall_monitor();
  stall_monitor(const stall_monitor&) = delete;
  stall_monitor& operator=(const stall_monitor&) = delete;

  /// The process's shared monitor (created on first use, never destroyed).
  static stall_monitor& shared();

  /// Samples every watched loop once.
  void tick();
  [[nodiscard]] time_point now() const noexcept;

  // For event_loop: start and stop watching a running loop.
  void watch(detail::watch_slot* slot);
  void unwatch(detail::watch_slot* slot) noexcept;

 private:
  stall_monitor();  // the shared one: steady clock, own thread
  void run_thread();

  spindle::clock* clock_;
  bool threaded_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<detail::watch_slot*> slots_;
};

}  // namespace spindle
