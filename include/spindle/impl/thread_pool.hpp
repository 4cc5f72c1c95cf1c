#pragma once
// Internals of thread_pool / run_blocking (included from thread_pool.hpp).

#include <chrono>
#include <coroutine>
#include <cstdint>
#include <functional>
#include <memory>
#include <stop_token>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

#include "spindle/event_loop.hpp"
#include "spindle/task.hpp"

namespace spindle {

namespace detail {
class pool_state;
class blocking_wait;

/// One call submitted to a pool. Shared by the submitting task and the
/// worker; state transitions happen under the pool's mutex.
class pool_job {
 public:
  enum class state : std::uint8_t { queued, running, finished, cancelled, abandoned };
  virtual ~pool_job() = default;
  /// Runs the call; stores the value or the exception. Never throws.
  virtual void invoke(std::stop_token token) noexcept = 0;
  [[nodiscard]] virtual bool failed() const noexcept = 0;

  std::string name;
  std::uint64_t id = 0;
  std::stop_source stop;
  state st = state::queued;        // guarded by the pool's mutex
  bool ended_by_shutdown = false;  // guarded by the pool's mutex
  std::chrono::steady_clock::time_point enqueued{}, started{};
  std::shared_ptr<loop_remote> remote;  // where the answer goes
  blocking_wait* awaiter = nullptr;     // loop thread only
};

template <class R>
class typed_job final : public pool_job {
 public:
  explicit typed_job(std::function<R(std::stop_token)> fn) : fn_(std::move(fn)) {}
  void invoke(std::stop_token token) noexcept override {
    try {
      if constexpr (std::is_void_v<R>) {
        fn_(std::move(token));
        result_.template emplace<1>();
      } else {
        result_.template emplace<1>(fn_(std::move(token)));
      }
    } catch (...) {
      result_.template emplace<2>(std::current_exception());
    }
    fn_ = nullptr;  // release captures on the worker, not later on the loop
  }
  [[nodiscard]] bool failed() const noexcept override { return result_.index() == 2; }
  R take() {
    if (result_.index() == 2) std::rethrow_exception(std::get<2>(result_));
    if constexpr (!std::is_void_v<R>) return std::move(std::get<1>(result_));
  }

 private:
  std::function<R(std::stop_token)> fn_;
  std::variant<std::monostate, std::conditional_t<std::is_void_v<R>, std::monostate, R>, std::exception_ptr>
      result_;
};

/// Awaits a submitted job's end (src/thread_pool.cpp).
class blocking_wait : public cancel_hook {
 public:
  blocking_wait(std::shared_ptr<pool_state> pool, std::shared_ptr<pool_job> job) noexcept
      : pool_(std::move(pool)), job_(std::move(job)) {}
  blocking_wait(const blocking_wait&) = delete;
  blocking_wait& operator=(const blocking_wait&) = delete;
  ~blocking_wait();
  [[nodiscard]] bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> h);
  /// Throws cancelled_error / shutdown_error when the call did not deliver.
  void await_resume() const;
  /// Posted by the worker (or shutdown) to the loop: the job has an answer.
  static void on_answer(const std::shared_ptr<pool_job>& job) noexcept;

 private:
  static void on_cancel_hook(cancel_hook* self) noexcept;
  void abandon() noexcept;

  std::shared_ptr<pool_state> pool_;
  std::shared_ptr<pool_job> job_;
  task_node* task_ = nullptr;
  timer_handle grace_;
  bool cancelled_ = false;
  bool shutdown_ = false;
  bool waiting_ = false;
};

/// Submits `job` (src/thread_pool.cpp): waits for room under when_full::wait.
task<void> submit(std::shared_ptr<pool_state> pool, std::shared_ptr<pool_job> job);

/// The coroutine of run_blocking (the job is made before it starts, so
/// nothing from the caller's expression lives in this frame).
template <class R>
task<R> run_job(std::shared_ptr<pool_state> pool, std::shared_ptr<typed_job<R>> job) {
  co_await submit(pool, job);
  blocking_wait wait(pool, job);
  co_await wait;
  co_return job->take();
}

template <class F, class... Args>
auto bind_blocking(F&& fn, Args&&... args) {
  // Arguments are copied/moved into the job: the call may outlive the caller's frame.
  return [fn = std::forward<F>(fn),
          ... args = std::forward<Args>(args)](std::stop_token token) mutable -> decltype(auto) {
    if constexpr (std::is_invocable_v<F&, std::stop_token, Args&...>) {
      return std::invoke(fn, std::move(token), args...);
    } else {
      return std::invoke(fn, args...);
    }
  };
}
}  // namespace detail

}  // namespace spindle
