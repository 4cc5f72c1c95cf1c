#pragma once
/// \file
/// thread_pool and run_blocking: blocking work on named, bounded pools.
/// There is no default pool: every run_blocking names the pool it uses.

#include <chrono>
#include <coroutine>
#include <cstdint>
#include <functional>
#include <memory>
#include <stop_token>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "spindle/diagnostics.hpp"
#include "spindle/error.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/shutdown_report.hpp"
#include "spindle/task.hpp"

namespace spindle {

/// A pool refused work: its queue (or its zombie allowance) is full and its
/// policy is `reject`, or it is shut down.
SPINDLE_DEFINE_ERROR(rejected_error, rejected);

/// What a submission does when the queue is full.
enum class when_full : std::uint8_t {
  reject,  ///< fail at once with rejected_error
  wait,    ///< the awaiting task suspends until there is room (the loop keeps running)
};

enum class shutdown_policy : std::uint8_t {
  drain,          ///< queued work still runs (within the grace period)
  cancel_queued,  ///< queued work is cancelled without running
};

struct thread_pool_options {
  std::string name = "pool";
  /// Threads always kept (the fixed size, or the floor of an elastic pool).
  std::size_t threads = 4;
  /// Bounded-elastic: grow up to this many threads while work waits and no
  /// thread is idle; extra threads exit after `idle_timeout` without work.
  /// 0 (default): fixed at `threads`.
  std::size_t max_threads = 0;
  duration idle_timeout = std::chrono::seconds(10);
  std::size_t queue_capacity = 64;
  when_full full = when_full::reject;
  /// After cancellation has requested stop on a running call, how long it
  /// may run on before it is abandoned (its thread becomes a zombie).
  duration abandon_grace = std::chrono::seconds(1);
  /// Zombie threads allowed before submissions wait or fail; 0: `threads`.
  std::size_t max_zombies = 0;
  /// Ties the pool to a loop's life: the loop's shutdown phase (run()
  /// returning, event_loop::shutdown(), or its destructor) cancels the
  /// loop's tasks, then shuts this pool down (cancel_queued, abandon_grace)
  /// and puts the pool's report into the loop's one combined
  /// loop_shutdown_report. The pool accepts no work after that. The loop
  /// need not outlive the pool, nor the pool the loop.
  event_loop* attach_to = nullptr;
  /// Where the destructor's report goes when it had to cancel or abandon
  /// work: `on_report` if set, else the diagnostic handler of `attach_to`
  /// (posted to that loop if it still exists; thread-safe), else one line
  /// on stderr.
  diagnostic_handler on_report{};
};

/// p50 / p99 over the most recent samples (up to 1,024); count and sum
/// over all of them.
struct latency_summary {
  duration p50{};
  duration p99{};
  std::uint64_t samples = 0;
  duration sum{};
};

struct pool_statistics {
  std::string name;
  std::size_t threads = 0;  ///< worker threads, zombies excluded
  std::size_t busy = 0;
  std::size_t queued = 0;
  std::size_t zombies = 0;
  std::uint64_t submitted = 0;
  std::uint64_t completed = 0;
  std::uint64_t failed = 0;
  std::uint64_t rejected = 0;
  std::uint64_t cancelled = 0;
  std::uint64_t abandoned = 0;
  latency_summary queue_wait;
  latency_summary run_time;
};

}  // namespace spindle

#include "spindle/impl/thread_pool.hpp"

namespace spindle {

/// A named pool of worker threads with a bounded queue.
///
/// **Thread safety:** all members are safe from any thread; run_blocking may
/// be awaited from tasks of any loop.
/// **Cancellation:** see run_blocking. Destroying a pool that was not shut
/// down performs shutdown(cancel_queued, abandon_grace) and reports it.
class thread_pool {
 public:
  explicit thread_pool(thread_pool_options opts);
  ~thread_pool();
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  /// Stops accepting work, then: `drain` lets queued work start, or
  /// `cancel_queued` cancels it; waits up to `grace` for running work;
  /// abandons what is still running (stop requested, threads left as
  /// zombies). Returns the account of every job ever accepted. Awaiters of
  /// cancelled or abandoned jobs get shutdown_error. Blocks the calling
  /// thread up to `grace`: do not call it on a loop thread with a long grace.
  shutdown_report shutdown(shutdown_policy policy, duration grace);

  [[nodiscard]] pool_statistics statistics() const;
  [[nodiscard]] const std::string& name() const noexcept;

  /// For run_blocking.
  [[nodiscard]] const std::shared_ptr<detail::pool_state>& state() const noexcept { return state_; }

 private:
  std::shared_ptr<detail::pool_state> state_;
};

/// A name for a blocking call (run_blocking's optional second argument).
/// A view, copied when the call is submitted: trivially copyable on purpose
/// (g++ 12 miscompiles std::string members of temporaries that live across
/// a co_await suspension; see DEVELOPERS.md).
struct job_name {
  std::string_view value;
};

/// Runs `fn(args...)` — or `fn(stop_token, args...)` when it takes one — on
/// `pool`, and resumes the awaiting task on its loop with the result or the
/// exception (type preserved).
///
/// **Thread safety:** await inside a task on any loop.
/// **Cancellation:** queued work is removed and never runs; running work has
/// stop requested on its token and `abandon_grace` to return, after which the
/// awaiting task gets cancelled_error at once (timeout_error through a
/// with_timeout) and the thread counts as a zombie until the call returns.
template <class F, class... Args>
auto run_blocking(thread_pool& pool, F&& fn, Args&&... args) {
  return run_blocking(pool, job_name{}, std::forward<F>(fn), std::forward<Args>(args)...);
}

/// As run_blocking, with a name that identifies the call in the pool's
/// shutdown report: `run_blocking(pool, job_name{"export"}, fn)`.
template <class F, class... Args>
auto run_blocking(thread_pool& pool, job_name name, F&& fn, Args&&... args) {
  auto bound = detail::bind_blocking(std::forward<F>(fn), std::forward<Args>(args)...);
  using R = std::invoke_result_t<decltype(bound)&, std::stop_token>;
  auto job = std::make_shared<detail::typed_job<R>>(std::function<R(std::stop_token)>(std::move(bound)));
  job->name = std::string(name.value);
  return detail::run_job<R>(pool.state(), std::move(job));
}

}  // namespace spindle
