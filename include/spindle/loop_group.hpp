#pragma once
/// \file
/// loop_group: N event loops on N threads (optionally pinned, one per CPU):
/// thread-per-core, entered through a portal per loop, stopped together
/// with one combined report. docs/threads.md, "One loop per core".

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "spindle/background_loop.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/portal.hpp"

namespace spindle {

struct loop_group_options {
  /// Loops (and threads); 0: one per CPU this process may run on.
  std::size_t loops = 0;
  /// The loops are named NAME-0, NAME-1, ... (their threads too).
  std::string name = "loop";
  /// Pin loop i to the i-th CPU of the process's affinity mask (modulo its
  /// size): each loop keeps its CPU's caches, and no two loops share one.
  bool pin = false;
  /// Each loop's options (the name is replaced as above).
  event_loop::options loop{};
  diagnostic_handler on_diagnostic{};
};

/// How a group's loops stopped: one report per loop, in order.
struct group_shutdown_report {
  std::vector<loop_shutdown_report> loops;
  /// Tasks cancelled, all loops together.
  [[nodiscard]] std::uint64_t cancelled() const noexcept;
  /// Nothing was cancelled, abandoned or failed on any loop.
  [[nodiscard]] bool clean() const noexcept;
  [[nodiscard]] std::string to_string() const;
};

/// N loops, each on a thread of its own, running until stop().
///
/// **Thread safety:** every member is safe from any thread but the
/// group's own loop threads (stop() would join itself; use the portals).
/// From a task on one loop, reach another with co_await submit_to(
/// group.portal(i), ...): no thread blocks.
/// **Cancellation:** stop() stops every loop (each cancels its tasks within
/// its shutdown_grace, shuts down its attached pools and closes its
/// portal) and returns the combined report.
class loop_group {
 public:
  /// Starts the loops; returns once every one is running.
  explicit loop_group(loop_group_options opts = {});
  /// stop(); a report that is not clean goes to stderr.
  ~loop_group();
  loop_group(const loop_group&) = delete;
  loop_group& operator=(const loop_group&) = delete;

  [[nodiscard]] std::size_t size() const noexcept { return loops_.size(); }
  /// The way into loop `i` from anywhere (a remote handle; copyable).
  [[nodiscard]] spindle::portal portal(std::size_t i) const;
  /// Loop `i`, for what is thread-safe on it (name, call_soon_threadsafe,
  /// thread_pool_options::attach_to).
  [[nodiscard]] event_loop& loop(std::size_t i);
  /// The CPU loop `i` is pinned to (-1: not pinned).
  [[nodiscard]] int cpu(std::size_t i) const;
  /// Stops every loop (in parallel) and joins their threads. Idempotent:
  /// later calls return the same report. Blocks for up to the loops'
  /// shutdown grace, so on the thread of any running loop it throws
  /// usage_error naming that loop: there, co_await stop_async().
  group_shutdown_report stop();
  /// stop() for a task on a loop outside the group: joined on a thread of
  /// its own, the task resumes on its loop with the report. Not a
  /// cancellation point (bounded by the shutdown grace).
  task<group_shutdown_report> stop_async();

 private:
  group_shutdown_report stop_joining();
  std::vector<std::unique_ptr<background_loop>> loops_;
  std::vector<int> cpus_;
  // stop_async()'s threads (one per call that found the loop running;
  // concurrent calls from several loops are fine), joined by the destructor.
  std::mutex stoppers_mutex_;
  std::vector<std::thread> stoppers_;
  std::mutex stop_mutex_;  // the stop itself, once
  std::atomic<bool> stopped_{false};
  group_shutdown_report report_;
};

}  // namespace spindle
