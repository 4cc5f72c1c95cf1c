#pragma once
/// \file
/// event_loop: a single-threaded scheduler with an epoll reactor, a ready
/// queue, timers and one thread-safe door (call_soon_threadsafe).

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <source_location>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "spindle/clock.hpp"
#include "spindle/detail/callback.hpp"
#include "spindle/detail/loop_remote.hpp"
#include "spindle/detail/task_node.hpp"
#include "spindle/detail/timer_heap.hpp"
#include "spindle/detail/typed_task_node.hpp"
#include "spindle/diagnostics.hpp"
#include "spindle/error.hpp"
#include "spindle/shutdown_report.hpp"
#include "spindle/step_hook.hpp"
#include "spindle/task.hpp"

namespace spindle {

template <class T>
class join_handle;
class timer_handle;
class async_fd;

/// Counters of one loop, read on its owner thread (statistics()).
struct loop_statistics {
  std::string name;
  std::uint64_t tasks_alive = 0;
  std::uint64_t tasks_spawned = 0;
  std::uint64_t tasks_completed = 0;   ///< finished with a value
  std::uint64_t tasks_failed = 0;      ///< finished with an exception other than cancelled
  std::uint64_t tasks_cancelled = 0;   ///< finished with cancelled_error
  std::uint64_t tasks_abandoned = 0;   ///< ignored cancellation past the shutdown grace
  std::uint64_t ready_depth = 0;       ///< entries in the ready queue now
  std::uint64_t timers = 0;            ///< timers queued now
  std::uint64_t io_registrations = 0;  ///< fds registered with the reactor now
  std::uint64_t steps = 0;             ///< ready entries run (tasks and callbacks), counted per batch
  std::uint64_t iterations = 0;        ///< turns of the loop
  std::uint64_t polls = 0;             ///< epoll_wait calls
  std::uint64_t threadsafe_calls = 0;  ///< callbacks received through call_soon_threadsafe
  std::uint64_t threadsafe_depth = 0;  ///< of those, posted but not yet taken by the loop
  std::uint64_t stalls = 0;            ///< steps the watchdog caught holding the loop past its threshold
  duration longest_stall{};            ///< the longest of those (as measured by the monitor)
};

/// The one combined report of a loop's shutdown phase (run() returning,
/// shutdown(), or the destructor): what happened to the tasks still alive,
/// and the final account of every thread pool attached to the loop.
struct loop_shutdown_report {
  std::string loop;
  std::uint64_t cancelled = 0;  ///< tasks alive at the start: all were cancelled
  /// What was cancelled, by name (the task's name, or its spawn site's
  /// file:line): max_named_tasks of them (newest first), and a count per
  /// name for the max_named_tasks most frequent names (the others summed
  /// under "(other names)"); the counts add up to `cancelled`.
  std::vector<std::string> cancelled_tasks;
  std::map<std::string, std::uint64_t> cancelled_by_name;
  static constexpr std::size_t max_named_tasks = 100;
  std::uint64_t ended_cancelled = 0;         ///< ended with cancelled_error within the grace
  std::uint64_t ended_failed = 0;            ///< ended with another exception within the grace
  std::uint64_t ended_completed = 0;         ///< ended normally within the grace (caught the cancellation)
  std::vector<std::string> abandoned_tasks;  ///< still alive after the grace (name or file:line)
  /// Attached pools shut down by this phase (thread_pool_options::attach_to),
  /// in the order they were attached.
  std::vector<shutdown_report> pools;
  /// Tasks that started or ended during the grace are included in the ended_
  /// counters, so only the pools' own balance is checked here.
  [[nodiscard]] bool pools_balanced() const noexcept {
    for (const auto& p : pools)
      if (!p.balanced()) return false;
    return true;
  }
  /// Nothing was cancelled, abandoned or failed.
  [[nodiscard]] bool clean() const noexcept;
  [[nodiscard]] std::string to_string() const;
};

namespace detail {
struct loop_access;
class waker;
}  // namespace detail

/// A single-threaded event loop.
///
/// The loop belongs to the thread that constructed it. Every method that is
/// not marked thread-safe checks the calling thread — in every build — and
/// throws wrong_thread_error naming both threads. Running a loop that is
/// already running, or running a loop inside another running loop on the
/// same thread, throws loop_running_error.
///
/// **Thread safety:** distinct loops: safe. One loop: only
/// call_soon_threadsafe(), stop(), is_running(), name() and owner_thread()
/// may be called from other threads.
/// **Cancellation:** run() cancels the tasks still alive when its main task
/// finishes, and waits up to options::shutdown_grace for them to end.
class event_loop {
 public:
  struct options {
    std::string name = "loop";
    /// Time source; null means the steady clock. Must outlive the loop.
    spindle::clock* clock = nullptr;
    /// How long run() waits for cancelled leftover tasks before reporting
    /// them as abandoned (measured on the steady clock).
    duration shutdown_grace = std::chrono::seconds(5);
    /// The step observer: by default the stall watchdog (diag layer,
    /// spindle/watchdog.hpp), on for every loop at 100 ms; threshold
    /// nullopt: off. See spindle/step_hook.hpp.
    step_watch_options watchdog{};
  };

  event_loop();
  explicit event_loop(options opts);
  ~event_loop();
  event_loop(const event_loop&) = delete;
  event_loop& operator=(const event_loop&) = delete;

  /// Runs `main` to completion and returns its value or rethrows its
  /// exception (like asyncio.run). Tasks still alive afterwards are
  /// cancelled and given shutdown_grace to finish. If stop() is called
  /// before `main` finishes, `main` is cancelled too and run() throws
  /// shutdown_error.
  template <class T>
  T run(task<T> main, std::string name = "main",
        std::source_location where = std::source_location::current());

  /// Runs until stop() is called. Does not shut down: tasks stay alive
  /// across run_forever() calls; call shutdown() when done.
  void run_forever();

  /// The shutdown phase, on demand (run() does this itself when its main
  /// task ends): cancels every live task and waits up to shutdown_grace for
  /// them, then shuts down the attached thread pools. Returns the combined
  /// report (also kept as last_shutdown_report()). Owner thread only, and
  /// not while the loop is running (throws loop_running_error).
  loop_shutdown_report shutdown();

  /// Asks the loop to return from run()/run_forever() after the current
  /// step. **Thread-safe**, as long as the loop outlives the call: a thread
  /// that cannot know that (the loop's own thread may destroy it as soon as
  /// it sees the request) posts the stop instead, as background_loop does.
  void stop() noexcept;

  /// Starts `t` as a new task on this loop and returns a handle that can be
  /// awaited (for the value or exception) or cancelled. Tasks run in the
  /// order they were spawned. The name (or, without one, the call site)
  /// identifies the task in diagnostics.
  template <class T>
  [[nodiscard]] join_handle<T> spawn(task<T> t, std::string name = {},
                                     std::source_location where = std::source_location::current());

  /// Starts `t` with nobody to await it. A failure is reported through the
  /// diagnostic handler. Detached work must be named.
  template <class T>
  void spawn_detached(task<T> t, std::string name,
                      std::source_location where = std::source_location::current());

  /// Runs `fn()` on the loop soon, after the entries already ready.
  template <class F>
  void call_soon(F&& fn);

  /// Runs `fn()` after `delay` (on the loop's clock).
  template <class F>
  timer_handle call_later(duration delay, F&& fn);

  /// Runs `fn()` at `when` (on the loop's clock).
  template <class F>
  timer_handle call_at(time_point when, F&& fn);

  /// Queues `fn()` to run on the loop. **Thread-safe**, lock-free, and
  /// callable before the loop runs; it wakes the loop if it is waiting.
  /// Callbacks still queued when the loop is destroyed are destroyed
  /// without running (and counted in a dropped_callback report).
  template <class F>
  void call_soon_threadsafe(F&& fn);

  /// The loop's current time.
  [[nodiscard]] time_point now() const noexcept {
    return clock_ != nullptr ? clock_->now() : steady_clock{}.now();
  }
  /// The time the loop last read the clock: at its last I/O poll (after
  /// every wait, and every 64 steps of a busy loop), so at most a batch of
  /// steps old (now() with a manual clock). For bookkeeping that needs no precision and is on a hot path,
  /// where reading the clock would cost more than it is worth: when a
  /// pooled connection went idle, a deadline seconds away.
  [[nodiscard]] time_point coarse_now() const noexcept {
    return clock_ != nullptr ? clock_->now() : coarse_now_;
  }

  [[nodiscard]] bool is_running() const noexcept { return running_.load(std::memory_order_acquire); }
  [[nodiscard]] const std::string& name() const noexcept { return opts_.name; }
  [[nodiscard]] std::thread::id owner_thread() const noexcept { return owner_; }
  [[nodiscard]] loop_statistics statistics() const;
  /// The report of the last shutdown phase (run() returning, or a
  /// destructor with tasks alive); empty before the first.
  [[nodiscard]] const loop_shutdown_report& last_shutdown_report() const noexcept { return last_shutdown_; }

  /// Replaces where diagnostics go (default: one line on stderr).
  void set_diagnostic_handler(diagnostic_handler handler);
  /// Sends a diagnostic to the handler; never throws.
  void report(const diagnostic& d) noexcept;

  /// The loop running on the calling thread, or null.
  [[nodiscard]] static event_loop* current() noexcept;

  /// Adds `p` to this loop's shutdown phase: after the tasks, the phase
  /// calls p->shutdown_for_loop() and puts the account in the report's
  /// `pools` (thread pools and portals join this way; the loop knows only
  /// the interface). Held weakly. **Thread-safe.**
  void attach_shutdown_participant(std::weak_ptr<shutdown_participant> p);

  /// A handle other threads may hold past the loop's life (see
  /// detail::loop_remote). **Thread-safe.**
  [[nodiscard]] std::shared_ptr<detail::loop_remote> remote() const noexcept { return remote_; }

 private:
  friend struct detail::loop_access;
  friend class detail::loop_remote;
  friend class detail::task_node;
  friend class async_fd;

  void check_owner(const char* method) const {
    // The loop running on this thread is owned by it: no pthread_self().
    if (detail::tls_context.loop != this && std::this_thread::get_id() != owner_) [[unlikely]]
      throw_wrong_thread(method);
  }
  [[noreturn]] void throw_wrong_thread(const char* method) const;

  // Ready queue (intrusive FIFO).
  void schedule(detail::ready_node* n) noexcept {
    n->next_ready = nullptr;
    if (tail_ != nullptr) {
      tail_->next_ready = n;
    } else {
      head_ = n;
    }
    tail_ = n;
    ++ready_size_;
  }
  detail::ready_node* pop_ready() noexcept {
    detail::ready_node* n = head_;
    head_ = n->next_ready;
    if (head_ == nullptr) tail_ = nullptr;
    --ready_size_;
    return n;
  }

  void add_task(detail::task_node* n);
  void on_task_done(detail::task_node* n) noexcept;
  void post_remote(detail::ready_node* n) noexcept;
  void drain_remote() noexcept;
  void add_timer(detail::timer_entry* e, time_point when);
  void remove_timer(detail::timer_entry* e) noexcept { timers_.erase(e); }

  void enter_run(const char* method);
  void leave_run() noexcept;
  // One turn: inbox, I/O poll, timers, a batch of ready entries.
  // `max_block_ns` caps how long it may wait for I/O (-1: no cap).
  void run_once(std::int64_t max_block_ns = -1);
  void poll_io(std::int64_t timeout_ns);  // -1: until an event
  void fire_timers(time_point now_tp);
  // Nanoseconds to wait in epoll; -1 forever; -2 "manual clock, timer in
  // the future" (run_once decides).
  std::int64_t compute_timeout(std::int64_t cap);
  std::int64_t compute_timeout_uncapped();
  // The shutdown phase: cancels every live task and runs until they end or
  // the grace expires, then shuts down the attached pools.
  void shutdown_tasks();
  // Drives run(): until `main` is done or stop(), then shutdown_tasks().
  // Returns true when stop() came before `main` finished.
  bool run_main(detail::task_node* main);

  options opts_;
  spindle::clock* clock_;
  std::thread::id owner_;
  std::string owner_desc_;  // "thread <tid> (<name>)" of the owner, for errors

  detail::ready_node* head_ = nullptr;
  detail::ready_node* tail_ = nullptr;
  std::size_t ready_size_ = 0;

  detail::timer_heap timers_;
  time_point coarse_now_ = steady_clock{}.now();  // see coarse_now()

  int epoll_fd_ = -1;
  std::shared_ptr<detail::waker> waker_;  // eventfd; shared with manual clocks' wake callbacks
  std::shared_ptr<detail::loop_remote> remote_ = std::make_shared<detail::loop_remote>(this);
  std::size_t clock_subscription_ = 0;
  std::size_t io_registrations_ = 0;

  // The thread-safe inbox: a lock-free stack of callback nodes (any thread
  // pushes; the loop takes the whole stack with one exchange and reverses it).
  std::atomic<detail::ready_node*> inbox_{nullptr};
  std::atomic<std::uint64_t> threadsafe_calls_{0};

  // The step hook (see spindle/step_hook.hpp); observer_ null when off.
  std::size_t run_batch_watched();  // returns the steps run
  void on_flagged_step_end(std::uint64_t seq) noexcept;
  std::unique_ptr<step_slot> step_slot_;
  std::shared_ptr<step_observer> observer_;  // made at the first run
  bool observer_made_ = false;
  step_slot* watch_ = nullptr;  // set while running with an observer
  std::uint64_t step_seq_ = 0;  // the last step's seq (at the end of a batch)
  // The task whose id/location the slot holds (until it ends), or the
  // callback marker after a callback.
  detail::ready_node* published_ = nullptr;
  std::string step_task_name_;  // its name, kept if it ended inside a flagged step
  std::uint64_t threadsafe_taken_ = 0;

  detail::task_node* live_head_ = nullptr;
  detail::task_node* abandoned_head_ = nullptr;  // reported at shutdown, never freed
  std::uint64_t next_task_id_ = 1;
  loop_statistics stats_;
  unsigned since_poll_ = 0;
  bool shutting_down_ = false;

  std::atomic<bool> running_{false};
  std::atomic<bool> stop_requested_{false};
  diagnostic_handler diag_;
  loop_shutdown_report last_shutdown_;
  std::mutex attached_mutex_;  // thread_pool constructors attach from any thread
  std::vector<std::weak_ptr<shutdown_participant>> attached_;
};

}  // namespace spindle

#include "spindle/impl/event_loop.hpp"
