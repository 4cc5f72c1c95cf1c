#pragma once
// Helpers shared by the tests.

#include <cstddef>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "spindle/clock.hpp"
#include "spindle/diagnostics.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/task.hpp"

namespace spindle::test {

/// A loop on an auto-advancing manual clock: timers fire in order without
/// the test ever sleeping, and elapsed() is exact.
struct manual_loop {
  manual_clock clock{manual_clock::mode::auto_advance};
  event_loop loop{{.name = "test", .clock = &clock}};
  time_point start = clock.now();
  [[nodiscard]] duration elapsed() const { return clock.now() - start; }
};

/// Sleeps for `d` (default: practically forever); counts the cancellation
/// in `cancelled` if one arrives, and rethrows it.
task<void> sleep_counting_cancellation(int& cancelled, duration d = std::chrono::hours(1));

/// Collects a loop's diagnostics instead of printing them.
class diagnostic_log {
 public:
  /// Declare it after the loop: it puts the default handler back when it
  /// goes, so the loop's own destruction reports go to stderr, not to it.
  explicit diagnostic_log(event_loop& loop);
  ~diagnostic_log();
  diagnostic_log(const diagnostic_log&) = delete;
  diagnostic_log& operator=(const diagnostic_log&) = delete;
  [[nodiscard]] std::vector<diagnostic> entries() const;
  [[nodiscard]] std::size_t count(diagnostic::kind k) const;

 private:
  event_loop& loop_;
  mutable std::mutex mutex_;  // the handler runs on the loop thread; tests read from theirs
  std::vector<diagnostic> entries_;
};

/// Runs `fn` on a new thread with a small stack (to prove constant stack
/// use) and rethrows what it throws.
void run_on_small_stack(std::size_t stack_bytes, const std::function<void()>& fn);

/// Number of open file descriptors of this process (not counting files
/// under /proc, which runtimes open for a moment).
[[nodiscard]] std::size_t open_fd_count();

}  // namespace spindle::test
