#pragma once
/// \file
/// background_loop: an event loop running forever on a thread of its own,
/// entered from other threads only through its portal — the fix for a
/// thread-per-request server sharing one loop (trap 3 in docs/threads.md).

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "spindle/diagnostics.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/portal.hpp"
#include "spindle/task.hpp"

namespace spindle {

struct background_loop_options {
  /// The loop's options (name, shutdown grace, clock, stall watchdog).
  event_loop::options loop{.name = "background"};
  /// Installed on the loop thread before it runs; null: one line on stderr.
  diagnostic_handler on_diagnostic{};
  /// Called on the new thread before the loop is made (for example to pin
  /// it to a CPU); an exception fails the constructor.
  std::function<void()> on_thread_start{};
};

/// Owns a thread running an event_loop until stop().
///
/// **Thread safety:** every member is safe from any thread; stop() and
/// statistics() from the loop's own thread are a wrong_thread_error (stop
/// would join itself) — except that statistics() there is answered directly.
/// **Cancellation:** stop() cancels the loop's tasks (shutdown_grace), shuts
/// down the thread pools attached to its loop, fails every pending portal
/// call with shutdown_error, and returns the combined report.
class background_loop {
 public:
  /// Starts the thread; returns once the loop is running.
  explicit background_loop(background_loop_options opts = {});
  /// stop(). If that had to abandon tasks or cancel or abandon pool jobs,
  /// the report goes to stderr (nothing is dropped silently).
  ~background_loop();
  background_loop(const background_loop&) = delete;
  background_loop& operator=(const background_loop&) = delete;

  /// Stops the loop and joins its thread; returns the combined shutdown
  /// report. Idempotent: later calls return the same report. Blocks for up
  /// to the loop's shutdown grace, so on the thread of any running loop it
  /// throws usage_error naming that loop: there, co_await stop_async().
  loop_shutdown_report stop();

  /// stop() for a task on another loop: the joining happens on a thread of
  /// its own and the task resumes, on its loop, with the report; its loop
  /// runs its other tasks meanwhile. Not a cancellation point (a stop once
  /// begun is waited for: it is bounded by the shutdown grace).
  /// Idempotent, like stop().
  task<loop_shutdown_report> stop_async();

  /// The way in from other threads (copyable; outlives the loop safely).
  [[nodiscard]] spindle::portal portal() const { return *portal_; }

  /// The loop, for what is thread-safe on it (call_soon_threadsafe, name,
  /// remote(), and thread_pool_options::attach_to). Everything else must
  /// run on the loop: use the portal.
  [[nodiscard]] event_loop& loop() noexcept { return *loop_; }

  /// The loop's statistics, taken on its thread. Throws shutdown_error
  /// after stop().
  [[nodiscard]] loop_statistics statistics();
  [[nodiscard]] bool running() const noexcept;
  [[nodiscard]] std::thread::id thread_id() const noexcept { return thread_id_; }

 private:
  loop_shutdown_report stop_joining();
  std::thread thread_;
  // stop_async()'s threads (one per call that found the loop running;
  // concurrent calls from several loops are fine), joined by the destructor.
  std::mutex stoppers_mutex_;
  std::vector<std::thread> stoppers_;
  std::thread::id thread_id_;
  event_loop* loop_ = nullptr;
  std::shared_ptr<detail::loop_remote> remote_;
  std::optional<spindle::portal> portal_;
  std::mutex stop_mutex_;
  std::atomic<bool> stopped_{false};
  loop_shutdown_report report_;  // written by the thread before it ends
};

}  // namespace spindle
