#pragma once
/// \file
/// The stall watchdog (diag layer): a monitor that notices when one step of
/// a loop (one task resumption or callback) holds the loop's thread longer
/// than a threshold, and names the culprit while it is happening. It plugs
/// into the loop's step hook (spindle/step_hook.hpp) as the default observer
/// of every loop (100 ms) whenever spindle::diag is linked, which
/// spindle::spindle always does.
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
#include "spindle/step_hook.hpp"

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

/// Per-loop watchdog settings (event_loop::options::watchdog): the core's
/// step_watch_options, whose threshold, on_stall and monitor the watchdog
/// reads (spindle/step_hook.hpp).
using watchdog_options = step_watch_options;

namespace detail {
/// The watchdog's state for one watched loop: the loop's step_slot plus the
/// monitor's bookkeeping (see src/diag/watchdog.cpp for the protocol).
struct watch_state {
  step_slot* slot = nullptr;
  std::atomic<std::uint64_t> acked_seq{0};   // set by the loop when it reports the end
  std::atomic<std::int64_t> stall_start{0};  // monitor clock, ns since its epoch
  // Fixed at attach.
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

  // For the watchdog's step observer: start and stop watching a running loop.
  void watch(detail::watch_state* w);
  void unwatch(detail::watch_state* w) noexcept;

 private:
  stall_monitor();  // the shared one: steady clock, own thread
  void run_thread();

  spindle::clock* clock_;
  bool threaded_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<detail::watch_state*> slots_;
};

}  // namespace spindle
