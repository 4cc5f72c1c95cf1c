#pragma once
// Internals of portal (included from portal.hpp).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <source_location>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <variant>

#include "spindle/cancel_scope.hpp"
#include "spindle/detail/callback.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/shutdown_report.hpp"
#include "spindle/task.hpp"

namespace spindle {
struct portal_statistics;
namespace detail {

template <class F>
struct portal_task_result {
  static_assert(sizeof(F) == 0,
                "portal: pass a callable returning spindle::task<T> (it is called on the loop thread), "
                "not a task: a task created on this thread would run its first steps here");
};
template <class T>
struct portal_task_result<task<T>> {
  using type = T;
};
template <class F>
using portal_task_result_t = typename portal_task_result<std::remove_cvref_t<std::invoke_result_t<F&>>>::type;

class portal_state;

/// One call's answer slot: answered exactly once (the first claim wins),
/// waited for by one foreign thread. The state word is a futex: the loop
/// side makes a syscall only when the caller is asleep.
class portal_call_base {
 public:
  explicit portal_call_base(std::shared_ptr<portal_state> owner) noexcept : owner_(std::move(owner)) {}
  portal_call_base(const portal_call_base&) = delete;
  portal_call_base& operator=(const portal_call_base&) = delete;
  virtual ~portal_call_base() = default;

  /// Caller side: true once answered; waits until then or `deadline` (null:
  /// no deadline). Spins briefly before sleeping.
  bool wait_until(const std::chrono::steady_clock::time_point* deadline) noexcept;
  [[nodiscard]] bool ready() const noexcept { return state_.load(std::memory_order_acquire) == answered; }

  /// Answers with `e` unless already answered. Any thread.
  void answer_exception(std::exception_ptr e) noexcept;
  /// Answers shutdown_error ("`what`") unless already answered.
  void answer_shutdown(const char* what) noexcept;

  /// For a task awaiting the answer on a loop (submit_to): `wake` is called
  /// once, on the answering thread, when the answer is published. False
  /// (and `wake` dropped) when the answer is already in.
  bool set_waker(std::function<void()> wake);
  /// No wake from now on; waits for a wake already running to return.
  void clear_waker() noexcept;

  std::atomic<bool> cancel_requested{false};

  // Loop thread only: the task running the call, while it runs.
  task_node* runner = nullptr;
  portal_call_base* prev = nullptr;
  portal_call_base* next = nullptr;

 protected:
  bool claim() noexcept { return !claimed_.exchange(true, std::memory_order_acq_rel); }
  void publish_value() noexcept;
  virtual void store_exception(std::exception_ptr e) noexcept = 0;

 private:
  std::atomic<std::uint64_t>& counter_for(const std::exception_ptr& e) noexcept;
  void publish() noexcept;
  static constexpr std::uint32_t pending = 0, sleeping = 1, answered = 2;
  std::atomic<std::uint32_t> state_{pending};
  std::atomic<bool> claimed_{false};
  std::shared_ptr<portal_state> owner_;
  std::mutex waker_mutex_;
  std::function<void()> waker_;
};

template <class T>
class portal_call final : public portal_call_base {
  using stored = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

 public:
  using portal_call_base::portal_call_base;

  template <class... V>
  void answer_value(V&&... v) noexcept {
    if (!claim()) return;
    try {
      result_.template emplace<1>(std::forward<V>(v)...);
    } catch (...) {
      result_.template emplace<2>(std::current_exception());
    }
    publish_value();
  }

  /// After ready(): the value, or the exception rethrown (the caller takes
  /// the only reference to it). Once.
  T take() {
    if (result_.index() == 2) {
      std::exception_ptr e = std::move(std::get<2>(result_));
      std::rethrow_exception(std::move(e));
    }
    if constexpr (!std::is_void_v<T>) return std::move(std::get<1>(result_));
  }

 private:
  void store_exception(std::exception_ptr e) noexcept override { result_.template emplace<2>(std::move(e)); }
  std::variant<std::monostate, stored, std::exception_ptr> result_;
};

/// Answers a call with shutdown_error if it is destroyed unanswered: held by
/// the callback posted to the loop and by the task running the call, so a
/// callback the loop drops, a post the dead loop refuses and a task that
/// never starts all still answer.
struct portal_guard {
  std::shared_ptr<portal_call_base> call;
  portal_guard() noexcept = default;
  explicit portal_guard(std::shared_ptr<portal_call_base> c) noexcept : call(std::move(c)) {}
  portal_guard(portal_guard&& o) noexcept : call(std::move(o.call)) {}
  portal_guard& operator=(portal_guard&&) = delete;
  ~portal_guard() {
    if (call) call->answer_shutdown("the loop stopped before the portal call finished");
  }
};

class portal_state final : public shutdown_participant, public std::enable_shared_from_this<portal_state> {
 public:
  explicit portal_state(event_loop& loop);

  void check_not_loop_thread(const char* method) const;
  [[nodiscard]] bool closed() const noexcept { return closed_.load(std::memory_order_acquire); }
  [[nodiscard]] const std::string& loop_name() const noexcept { return loop_name_; }
  [[nodiscard]] portal_statistics statistics() const noexcept;

  template <class T, class F>
  void start(const std::shared_ptr<portal_call<T>>& call, F make, std::string_view name,
             std::source_location where, const std::chrono::steady_clock::time_point* deadline);
  template <class R, class F>
  void run_sync(const std::shared_ptr<portal_call<R>>& call, F fn);

  /// Any thread: asks the loop to cancel the call's task (never blocks).
  void request_cancel(const std::shared_ptr<portal_call_base>& call) noexcept;
  /// Caller side, at its deadline: answers timeout_error unless answered,
  /// and cancels the task on the loop.
  void time_out(const std::shared_ptr<portal_call_base>& call, duration timeout) noexcept;

  // Loop thread only.
  void add_runner(portal_call_base* c, task_node* t) noexcept;
  void remove_runner(portal_call_base* c) noexcept;
  std::optional<shutdown_report> shutdown_for_loop() noexcept override;

  // Counters (portal_statistics), any thread.
  std::atomic<std::uint64_t> submitted{0}, completed{0}, failed{0}, cancelled{0}, timed_out{0}, shut_down{0};

 private:
  // Posts to the loop; a closed portal or a dead loop deletes `cb` unrun
  // (its guard, if any, answers shutdown_error).
  void post(callback_node* cb) noexcept;
  void reject_closed(portal_call_base& call) noexcept;

  std::shared_ptr<loop_remote> remote_;
  std::thread::id owner_;
  std::string loop_name_;
  std::atomic<bool> closed_{false};
  portal_call_base* runners_ = nullptr;  // loop thread only
};

/// Runs one portal call as a task on the loop. `make` lives in this frame
/// until the call ends: a coroutine lambda's captures stay valid.
template <class T, class F>
task<void> portal_run(portal_guard guard, std::shared_ptr<portal_state> st, F make, duration timeout) {
  auto& call = static_cast<portal_call<T>&>(*guard.call);
  st->add_runner(&call, &current_task("portal"));
  std::exception_ptr error;
  try {
    task<T> body = make();
    if constexpr (std::is_void_v<T>) {
      if (timeout > duration::zero()) {
        co_await with_timeout(timeout, std::move(body));
      } else {
        co_await std::move(body);
      }
      call.answer_value();
    } else {
      std::optional<T> v;
      if (timeout > duration::zero()) {
        v.emplace(co_await with_timeout(timeout, std::move(body)));
      } else {
        v.emplace(co_await std::move(body));
      }
      call.answer_value(std::move(*v));
    }
  } catch (const cancelled_error&) {
    // Not asked for by the caller: the loop's shutdown phase cancelled it.
    if (!call.cancel_requested.load(std::memory_order_acquire)) {
      st->remove_runner(&call);
      call.answer_shutdown("the loop stopped before the portal call finished; its task was cancelled");
      guard.call.reset();
      co_return;
    }
    error = std::current_exception();
  } catch (...) {
    error = std::current_exception();
  }
  st->remove_runner(&call);
  if (error) call.answer_exception(std::move(error));
  guard.call.reset();
}

template <class T, class F>
void portal_state::start(const std::shared_ptr<portal_call<T>>& call, F make, std::string_view name,
                         std::source_location where, const std::chrono::steady_clock::time_point* deadline) {
  submitted.fetch_add(1, std::memory_order_relaxed);
  if (closed()) return reject_closed(*call);
  std::chrono::steady_clock::time_point until{};
  if (deadline != nullptr) until = *deadline;
  auto run = [guard = portal_guard(call), st = shared_from_this(), make = std::move(make),
              task_name = std::string(name), where, has_deadline = deadline != nullptr, until]() mutable {
    auto& c = static_cast<portal_call<T>&>(*guard.call);
    if (st->closed()) return;  // the guard answers shutdown_error
    if (c.cancel_requested.load(std::memory_order_acquire)) {
      c.answer_exception(std::make_exception_ptr(cancelled_error("portal call cancelled before it started")));
      guard.call.reset();
      return;
    }
    duration left = duration::zero();
    if (has_deadline) {
      // (Compared before subtracting: `until` may be near time_point::min().)
      const auto now = std::chrono::steady_clock::now();
      if (until > now) left = std::chrono::duration_cast<duration>(until - now);
      if (left <= duration::zero()) {
        c.answer_exception(std::make_exception_ptr(timeout_error("portal call timed out before it started")));
        guard.call.reset();
        return;
      }
    }
    std::exception_ptr error;
    try {
      event_loop::current()->spawn_detached(portal_run<T>(std::move(guard), st, std::move(make), left),
                                            std::move(task_name), where);
    } catch (...) {
      error = std::current_exception();
    }
    if (error && guard.call) guard.call->answer_exception(std::move(error));
    guard.call.reset();
  };
  post(make_callback(std::move(run)));
}

template <class R, class F>
void portal_state::run_sync(const std::shared_ptr<portal_call<R>>& call, F fn) {
  submitted.fetch_add(1, std::memory_order_relaxed);
  if (closed()) return reject_closed(*call);
  auto run = [guard = portal_guard(call), st = shared_from_this(), fn = std::move(fn)]() mutable {
    auto& c = static_cast<portal_call<R>&>(*guard.call);
    if (st->closed()) return;
    std::exception_ptr error;
    try {
      if constexpr (std::is_void_v<R>) {
        fn();
        c.answer_value();
      } else {
        c.answer_value(fn());
      }
    } catch (...) {
      error = std::current_exception();
    }
    // Answered outside the handler: the caller may wake at once, and the
    // exception must not still be in flight on this thread.
    if (error) c.answer_exception(std::move(error));
    guard.call.reset();
  };
  post(make_callback(std::move(run)));
}

}  // namespace detail
}  // namespace spindle
