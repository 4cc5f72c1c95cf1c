#pragma once
/// \file
/// semaphore and limiter: bound how many tasks use a resource at once.

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "spindle/detail/wait_queue.hpp"
#include "spindle/error.hpp"
#include "spindle/task.hpp"

namespace spindle {

struct semaphore_statistics {
  std::string name;
  std::size_t permits = 0;      ///< the limit
  std::size_t available = 0;    ///< free permits now
  std::size_t waiting = 0;      ///< tasks waiting now
  std::uint64_t acquired = 0;   ///< acquisitions in all
  std::uint64_t waited = 0;     ///< acquisitions that had to wait
  std::uint64_t cancelled = 0;  ///< waits ended by cancellation
};

class semaphore;

/// Releases its permit when destroyed (or on release()).
class semaphore_permit {
 public:
  semaphore_permit() noexcept = default;
  explicit semaphore_permit(semaphore* s) noexcept : s_(s) {}
  semaphore_permit(semaphore_permit&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  semaphore_permit& operator=(semaphore_permit&& o) noexcept {
    if (this != &o) {
      release();
      s_ = std::exchange(o.s_, nullptr);
    }
    return *this;
  }
  semaphore_permit(const semaphore_permit&) = delete;
  semaphore_permit& operator=(const semaphore_permit&) = delete;
  ~semaphore_permit() { release(); }
  void release() noexcept;
  [[nodiscard]] bool holds() const noexcept { return s_ != nullptr; }

 private:
  semaphore* s_ = nullptr;
};

/// A counting semaphore with FIFO hand-off (a released permit goes straight
/// to the oldest waiter).
///
/// **Thread safety:** one loop's tasks only (no locks: it is a loop object).
/// **Cancellation:** acquire() is a cancellation point; a cancelled wait
/// leaves the queue and takes no permit.
class semaphore {
 public:
  explicit semaphore(std::size_t permits, std::string name = "semaphore")
      : name_(std::move(name)), permits_(permits), available_(permits) {}
  semaphore(const semaphore&) = delete;
  semaphore& operator=(const semaphore&) = delete;

  class acquire_awaiter : public detail::waiter {
   public:
    explicit acquire_awaiter(semaphore& s) noexcept : s_(&s) {}
    [[nodiscard]] bool await_ready() noexcept { return !detail::cancel_pending() && s_->try_acquire(); }
    bool await_suspend(std::coroutine_handle<> h) {
      if (!s_->queue_.park(*this, h, "semaphore::acquire")) return false;
      ++s_->waited_;
      return true;
    }
    void await_resume() const {
      if (cancelled) throw cancelled_error();
    }

   private:
    semaphore* s_;
  };

  /// Waits for a permit; pair with release() (prefer acquire_permit()).
  [[nodiscard]] acquire_awaiter acquire() noexcept { return acquire_awaiter(*this); }
  /// Takes a permit if one is free and nobody waits.
  [[nodiscard]] bool try_acquire() noexcept {
    if (available_ == 0 || !queue_.empty()) return false;
    --available_;
    ++acquired_;
    return true;
  }
  /// Gives a permit back (to the oldest waiter, if any).
  void release() noexcept {
    if (detail::waiter* w = queue_.pop_front()) {
      ++acquired_;
      detail::wait_queue::wake(*w);  // the permit is now the waiter's
    } else {
      ++available_;
    }
  }

  /// Waits for a permit held by the returned RAII object.
  [[nodiscard]] task<semaphore_permit> acquire_permit();

  [[nodiscard]] semaphore_statistics statistics() const {
    return {name_, permits_, available_, queue_.size(), acquired_, waited_, queue_.cancelled_waits()};
  }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }

 private:
  std::string name_;
  std::size_t permits_;
  std::size_t available_;
  detail::wait_queue queue_;
  std::uint64_t acquired_ = 0;
  std::uint64_t waited_ = 0;
};

inline void semaphore_permit::release() noexcept {
  if (s_ != nullptr) std::exchange(s_, nullptr)->release();
}

/// Per-key limits (for example at most N connections per host): one named
/// semaphore per key, created on first use.
///
/// **Thread safety:** one loop's tasks only.
/// **Cancellation:** acquire() is a cancellation point.
class limiter {
 public:
  limiter(std::size_t per_key, std::string name = "limiter") : per_key_(per_key), name_(std::move(name)) {}
  /// Waits for a permit of `key`'s semaphore.
  [[nodiscard]] task<semaphore_permit> acquire(const std::string& key);
  /// The semaphore of `key` (created if needed), for statistics.
  [[nodiscard]] semaphore& of(const std::string& key);
  [[nodiscard]] std::size_t keys() const noexcept { return map_.size(); }

 private:
  std::size_t per_key_;
  std::string name_;
  std::map<std::string, std::unique_ptr<semaphore>> map_;
};

}  // namespace spindle
