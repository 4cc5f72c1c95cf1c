#pragma once
/// \file
/// portal: the thread-safe way into a loop from threads that are not its
/// own (a thread-per-request server's workers, a GUI thread, a C callback).
///
/// A portal never runs anything on the calling thread and never touches
/// the loop from it: every call is posted through the loop's thread-safe
/// door, runs as a task on the loop, and is answered through a one-shot
/// slot the caller waits on. There is no "loop already running" and no
/// "wrong thread" for the caller to get wrong.

#include <chrono>
#include <cstdint>
#include <exception>
#include <future>
#include <memory>
#include <source_location>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "spindle/cancel_scope.hpp"
#include "spindle/error.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/shutdown_report.hpp"
#include "spindle/task.hpp"

namespace spindle {

/// Counters of one portal (all its copies), readable from any thread.
struct portal_statistics {
  std::uint64_t submitted = 0;  ///< calls made (submit, call, call_sync)
  std::uint64_t completed = 0;  ///< answered with a value
  std::uint64_t failed = 0;     ///< answered with the task's own exception
  std::uint64_t cancelled = 0;  ///< answered cancelled_error (portal_future::cancel)
  std::uint64_t timed_out = 0;  ///< call() timeouts (the task was cancelled on the loop)
  std::uint64_t shut_down = 0;  ///< answered shutdown_error (the loop stopped first)
};

}  // namespace spindle

#include "spindle/event.hpp"
#include "spindle/impl/portal.hpp"

namespace spindle {

template <class T>
class portal_future;
namespace detail {
template <class T>
task<T> await_portal_answer(portal_future<T> f);
}  // namespace detail

/// The answer to one portal::submit: wait for it, take it, or cancel it
/// from any thread.
///
/// **Thread safety:** any thread except the loop's own may wait (get, wait,
/// wait_for, wait_until: the loop's thread gets wrong_thread_error — it
/// would deadlock); ready() and cancel() are safe from every thread. One
/// thread at a time per future (like std::future). Move-only.
template <class T>
class [[nodiscard]] portal_future {
 public:
  portal_future() noexcept = default;
  explicit portal_future(std::shared_ptr<detail::portal_call<T>> call,
                         std::shared_ptr<detail::portal_state> st) noexcept
      : call_(std::move(call)), state_(std::move(st)) {}

  [[nodiscard]] bool valid() const noexcept { return call_ != nullptr; }
  /// True once the answer is in (get() will not block).
  [[nodiscard]] bool ready() const noexcept { return call_ && call_->ready(); }

  /// Blocks until the answer, then returns the value or rethrows the
  /// task's exception (cancelled_error after cancel(), shutdown_error when
  /// the loop stopped first). Leaves the future invalid.
  T get() {
    check("portal_future::get");
    state_->check_not_loop_thread("portal_future::get");
    call_->wait_until(nullptr);
    auto call = std::move(call_);
    state_.reset();
    return call->take();
  }
  void wait() const {
    check("portal_future::wait");
    state_->check_not_loop_thread("portal_future::wait");
    call_->wait_until(nullptr);
  }
  std::future_status wait_for(duration d) const {
    return wait_until(saturating_add(std::chrono::steady_clock::now(), d));
  }
  std::future_status wait_until(std::chrono::steady_clock::time_point t) const {
    check("portal_future::wait_until");
    state_->check_not_loop_thread("portal_future::wait_until");
    return call_->wait_until(&t) ? std::future_status::ready : std::future_status::timeout;
  }

  /// Requests cancellation of the task on the loop (delivered as
  /// cancelled_error at its next await; if it has not started, it never
  /// starts). get() then throws cancelled_error, unless the task finished
  /// first. **Thread-safe**, never blocks; a no-op once answered.
  void cancel() noexcept {
    if (call_) state_->request_cancel(call_);
  }

 private:
  void check(const char* what) const {
    if (!call_) throw usage_error(std::string(what) + " on an invalid portal_future");
  }
  template <class U>
  friend task<U> detail::await_portal_answer(portal_future<U> f);
  std::shared_ptr<detail::portal_call<T>> call_;
  std::shared_ptr<detail::portal_state> state_;
};

/// A thread-safe handle for running work on one loop from other threads.
/// Cheap to copy; copies share the loop.
///
/// `make_task` is a callable returning `task<T>`; it is called on the loop
/// thread and kept alive until its task ends, so a coroutine lambda's
/// captures stay valid (captures by reference must outlive the call:
/// fine for call(), which blocks; take care with submit()). The
/// task runs as a task of the loop named by `name` (default: "portal.call"
/// or "portal.submit") and the caller's source location, so diagnostics
/// (the stall watchdog, failure reports) name the caller's code.
///
/// **Thread safety:** every member is safe from any thread. The blocking
/// ones (call, call_sync, and waiting on a portal_future) throw
/// wrong_thread_error on the loop's own thread instead of deadlocking, and
/// usage_error on the thread of any other running loop (which they would
/// freeze): from a task, co_await submit_to(portal, make_task) instead.
/// **Cancellation:** call's timeout cancels the task on the loop; a
/// portal_future can be cancelled. The loop's shutdown phase closes the
/// portal: pending calls fail with shutdown_error (every call gets an
/// answer), later calls fail with shutdown_error at once.
class portal {
 public:
  /// A portal into `loop`. Call it on the loop's thread or while the loop is
  /// known to be alive; the portal itself may outlive the loop.
  explicit portal(event_loop& loop);

  /// Starts `make_task()` on the loop and returns its future at once.
  template <class F>
  auto submit(F make_task, std::string_view name = {},
              std::source_location where = std::source_location::current()) const {
    using T = detail::portal_task_result_t<F>;
    auto call = std::make_shared<detail::portal_call<T>>(state_);
    state_->template start<T>(call, std::move(make_task), name.empty() ? "portal.submit" : name, where,
                              nullptr);
    return portal_future<T>(std::move(call), state_);
  }

  /// Runs `make_task()` on the loop and blocks the calling thread until it
  /// ends: returns its value or rethrows its exception. When `timeout`
  /// passes first, the task is cancelled on the loop (its cleanup runs
  /// there) and the caller gets timeout_error at once — the caller is never
  /// held past its timeout, even by a stalled loop. The task sees the
  /// deadline (current_deadline()), so work inside it can budget for it.
  template <class F>
  auto call(F make_task, duration timeout, std::string_view name = {},
            std::source_location where = std::source_location::current()) const {
    using T = detail::portal_task_result_t<F>;
    state_->check_not_loop_thread("portal::call");
    const auto deadline = saturating_add(std::chrono::steady_clock::now(), timeout);
    auto call = std::make_shared<detail::portal_call<T>>(state_);
    state_->template start<T>(call, std::move(make_task), name.empty() ? "portal.call" : name, where,
                              &deadline);
    if (!call->wait_until(&deadline)) {
      state_->time_out(call, timeout);
      // If the loop claimed the slot first, it is storing its answer now.
      call->wait_until(nullptr);
    }
    return call->take();
  }

  /// As call(), without a timeout.
  template <class F>
  auto call(F make_task, std::string_view name = {},
            std::source_location where = std::source_location::current()) const {
    using T = detail::portal_task_result_t<F>;
    state_->check_not_loop_thread("portal::call");
    auto call = std::make_shared<detail::portal_call<T>>(state_);
    state_->template start<T>(call, std::move(make_task), name.empty() ? "portal.call" : name, where,
                              nullptr);
    call->wait_until(nullptr);
    return call->take();
  }

  /// Runs the plain function `fn()` on the loop thread (between steps: it
  /// cannot await) and blocks until it returns; returns its value or
  /// rethrows. For touching loop-owned state from outside.
  template <class F>
  auto call_sync(F fn) const -> std::invoke_result_t<F&> {
    using R = std::invoke_result_t<F&>;
    state_->check_not_loop_thread("portal::call_sync");
    auto call = std::make_shared<detail::portal_call<R>>(state_);
    state_->template run_sync<R>(call, std::move(fn));
    call->wait_until(nullptr);
    return call->take();
  }

  /// True once the loop's shutdown phase closed the portal (or the loop is
  /// gone): every call fails with shutdown_error.
  [[nodiscard]] bool closed() const noexcept { return state_->closed(); }
  [[nodiscard]] const std::string& loop_name() const noexcept { return state_->loop_name(); }
  [[nodiscard]] portal_statistics statistics() const noexcept { return state_->statistics(); }

 private:
  std::shared_ptr<detail::portal_state> state_;
};

namespace detail {

// Awaits a future's answer from a task on any loop without blocking its
// thread: the answering side posts a wake to this loop.
template <class T>
task<T> await_portal_answer(portal_future<T> f) {
  event_loop& here = *event_loop::current();
  auto done = std::make_shared<event>("submit_to answer");
  auto wake = [&here, done] { here.call_soon_threadsafe([done] { done->set(); }); };
  if (f.call_->set_waker(std::move(wake))) {
    std::exception_ptr cancelled;
    try {
      co_await done->wait();
    } catch (...) {
      cancelled = std::current_exception();
    }
    if (cancelled) {
      // Structured: the target's task is cancelled and waited for, so what
      // it borrows from this caller stays valid until it ends.
      f.cancel();
      auto rest = shielded(done->wait());
      co_await std::move(rest);
      f.call_->clear_waker();
      std::rethrow_exception(cancelled);
    }
  }
  f.call_->clear_waker();
  auto call = std::move(f.call_);
  co_return call->take();
}

}  // namespace detail

/// The non-blocking door between loops (Seastar's `smp::submit_to`): runs
/// `make_task()` on the portal's loop and resumes the calling task, on its
/// own loop, with the value or the exception (type kept). No thread is
/// blocked: the caller's loop runs its other tasks meanwhile. From a loop's
/// thread, this is the way in; portal::call, call_sync and waiting on a
/// portal_future throw usage_error there.
///
///     int n = co_await submit_to(other.portal(), [&]() -> task<int> { co_return count(); });
///
/// **Thread safety:** await inside a task on any loop (the target's own
/// included).
/// **Cancellation:** a cancellation point; cancelling the caller cancels
/// the task on the target loop and waits for it to end (so captures by
/// reference stay valid), then throws cancelled_error. When the target
/// loop stops first: shutdown_error.
template <class F>
auto submit_to(portal target, F make_task, std::string_view name = {},
               std::source_location where = std::source_location::current())
    -> task<detail::portal_task_result_t<F>> {
  using T = detail::portal_task_result_t<F>;
  // Submitted when awaited (not when called), as any task.
  return [](portal p, F make, std::string n, std::source_location w) -> task<T> {
    auto fut = p.submit(std::move(make), n.empty() ? std::string_view("submit_to") : std::string_view(n), w);
    co_return co_await detail::await_portal_answer<T>(std::move(fut));
  }(std::move(target), std::move(make_task), std::string(name), where);
}

}  // namespace spindle
