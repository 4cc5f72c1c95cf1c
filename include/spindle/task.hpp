#pragma once
/// \file
/// task<T>: the lazy coroutine type of spindle.

#include <coroutine>
#include <exception>
#include <memory>
#include <type_traits>
#include <utility>

#include "spindle/detail/frame_allocator.hpp"

namespace spindle {

template <class T = void>
class task;

namespace detail {

class task_node;

/// The part of every task promise that does not depend on T.
///
/// Invariant: at most one of `continuation_` and `root_` is set. A task that
/// is awaited by another coroutine resumes it at final suspend (symmetric
/// transfer, so chains of synchronously completing awaits use constant
/// stack); a task that is the root of a spawned task notifies its node.
class promise_base {
 public:
  struct final_awaiter {
    [[nodiscard]] bool await_ready() const noexcept { return false; }
    template <class Promise>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> h) noexcept {
      promise_base& p = h.promise();
      if (p.continuation_) return p.continuation_;
      if (p.root_ != nullptr) notify_root_done(p.root_);  // may destroy h's frame
      return std::noop_coroutine();
    }
    void await_resume() const noexcept {}
  };

  std::suspend_always initial_suspend() const noexcept { return {}; }
  final_awaiter final_suspend() const noexcept { return {}; }
  void unhandled_exception() noexcept { exception_ = std::current_exception(); }

  static void* operator new(std::size_t size) { return frame_allocate(size); }
  static void operator delete(void* p, std::size_t size) noexcept { frame_deallocate(p, size); }

  void set_continuation(std::coroutine_handle<> c) noexcept { continuation_ = c; }
  void set_root(task_node* node) noexcept { root_ = node; }
  [[nodiscard]] const std::exception_ptr& exception() const noexcept { return exception_; }
  void set_exception(std::exception_ptr e) noexcept { exception_ = std::move(e); }

 protected:
  void rethrow_if_failed() const {
    if (exception_) std::rethrow_exception(exception_);
  }

 private:
  static void notify_root_done(task_node* node) noexcept;

  std::coroutine_handle<> continuation_;
  task_node* root_ = nullptr;
  std::exception_ptr exception_;
};

template <class T>
class task_promise final : public promise_base {
 public:
  task<T> get_return_object() noexcept;

  template <class U>
  requires std::is_convertible_v<U&&, T>
  void return_value(U&& v) noexcept(std::is_nothrow_constructible_v<T, U&&>) {
    value_.construct(std::forward<U>(v));
  }

  /// Moves the value out, or rethrows the task's exception.
  T take() {
    rethrow_if_failed();
    return std::move(value_.get());
  }

 private:
  // Manual storage: T need not be default-constructible.
  struct storage {
    alignas(T) unsigned char bytes[sizeof(T)];
    bool engaged = false;
    storage() noexcept = default;
    storage(const storage&) = delete;
    storage& operator=(const storage&) = delete;
    ~storage() {
      if (engaged) get().~T();
    }
    template <class U>
    void construct(U&& v) {
      ::new (static_cast<void*>(bytes)) T(std::forward<U>(v));
      engaged = true;
    }
    T& get() noexcept { return *std::launder(reinterpret_cast<T*>(bytes)); }
  };
  storage value_;
};

template <class T>
class task_promise<T&> final : public promise_base {
 public:
  task<T&> get_return_object() noexcept;
  void return_value(T& v) noexcept { value_ = std::addressof(v); }
  T& take() {
    rethrow_if_failed();
    return *value_;
  }

 private:
  T* value_ = nullptr;
};

template <>
class task_promise<void> final : public promise_base {
 public:
  task<void> get_return_object() noexcept;
  void return_void() const noexcept {}
  void take() const { rethrow_if_failed(); }
};

}  // namespace detail

/// A lazily started coroutine producing a T (or an exception).
///
/// A task does nothing until it is awaited (`co_await std::move(t)` or
/// `co_await make()`), run by an event_loop (`loop.run(t)`), or spawned
/// (`loop.spawn(t)`). Awaiting transfers control to the task directly
/// (symmetric transfer): a chain of any length of synchronously completing
/// awaits runs in constant stack space.
///
/// **Thread safety:** a task is a single-owner value; distinct tasks are
/// independent, one task must not be used from two threads at once.
/// **Cancellation:** a task is not itself a cancellation point; it runs
/// inside the spawned task that awaits it, and the awaitables it uses
/// deliver that task's cancellation.
template <class T>
class [[nodiscard]] task {
 public:
  using promise_type = detail::task_promise<T>;
  using handle_type = std::coroutine_handle<promise_type>;
  using value_type = T;

  task() noexcept = default;
  explicit task(handle_type h) noexcept : h_(h) {}
  task(task&& other) noexcept : h_(std::exchange(other.h_, {})) {}
  task& operator=(task&& other) noexcept {
    if (this != &other) {
      if (h_) h_.destroy();
      h_ = std::exchange(other.h_, {});
    }
    return *this;
  }
  task(const task&) = delete;
  task& operator=(const task&) = delete;
  ~task() {
    if (h_) h_.destroy();
  }

  /// True when the task holds a coroutine.
  [[nodiscard]] bool valid() const noexcept { return static_cast<bool>(h_); }
  /// True when the coroutine ran to completion (value or exception).
  [[nodiscard]] bool done() const noexcept { return h_ && h_.done(); }

  auto operator co_await() && noexcept { return awaiter{h_}; }
  auto operator co_await() & noexcept { return awaiter{h_}; }

  /// The coroutine handle, for runtime internals (spawn, run).
  [[nodiscard]] handle_type handle() const noexcept { return h_; }
  /// Gives up ownership of the coroutine frame.
  [[nodiscard]] handle_type release() noexcept { return std::exchange(h_, {}); }

 private:
  struct awaiter {
    handle_type h;
    [[nodiscard]] bool await_ready() const noexcept { return !h || h.done(); }
    std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiting) noexcept {
      h.promise().set_continuation(awaiting);
      return h;
    }
    decltype(auto) await_resume() {
      if (!h) throw_invalid();
      return h.promise().take();
    }
  };
  [[noreturn]] static void throw_invalid();

  handle_type h_;
};

namespace detail {
template <class T>
task<T> task_promise<T>::get_return_object() noexcept {
  return task<T>{std::coroutine_handle<task_promise<T>>::from_promise(*this)};
}
template <class T>
task<T&> task_promise<T&>::get_return_object() noexcept {
  return task<T&>{std::coroutine_handle<task_promise<T&>>::from_promise(*this)};
}
inline task<void> task_promise<void>::get_return_object() noexcept {
  return task<void>{std::coroutine_handle<task_promise<void>>::from_promise(*this)};
}
[[noreturn]] void throw_invalid_task();
}  // namespace detail

template <class T>
void task<T>::throw_invalid() {
  detail::throw_invalid_task();
}

}  // namespace spindle
