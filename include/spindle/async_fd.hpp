#pragma once
/// \file
/// async_fd: readiness of a non-blocking file descriptor, as awaitables.

#include <coroutine>
#include <cstdint>

#include "spindle/detail/task_node.hpp"

namespace spindle {

class event_loop;

namespace detail {
struct fd_waiter;
}

/// Registers a non-blocking descriptor with a loop's reactor (epoll,
/// edge-triggered) and lets tasks wait for it to become readable or
/// writable. The descriptor is not owned: close it after the async_fd is
/// destroyed.
///
/// Contract (as with Tokio's AsyncFd): wait for readiness only after an
/// operation returned EAGAIN. wait_readable() completes when the descriptor
/// has become readable since the last wait completed, so a caller that
/// stops reading before EAGAIN may wait for data that is already there.
/// Errors and hang-ups (EPOLLERR/EPOLLHUP) complete both waits, so the next
/// read or write reports them.
///
/// **Thread safety:** use only on the loop's thread (checked at
/// construction). At most one reader and one writer wait at a time.
/// **Cancellation:** both waits are cancellation points; a cancelled wait
/// leaves no registration behind.
class async_fd {
 public:
  async_fd(event_loop& loop, int fd);
  ~async_fd();
  async_fd(const async_fd&) = delete;
  async_fd& operator=(const async_fd&) = delete;

  [[nodiscard]] int fd() const noexcept { return fd_; }
  [[nodiscard]] event_loop& loop() const noexcept { return *loop_; }

  class wait_awaiter;
  [[nodiscard]] wait_awaiter wait_readable() noexcept;
  [[nodiscard]] wait_awaiter wait_writable() noexcept;

  /// Readiness hint for the read direction, to skip a read that would
  /// fail with EAGAIN (as Tokio does). False only after mark_read_drained()
  /// with no readiness event since; never false once the peer has shut
  /// down its side or an error is pending (EPOLLRDHUP/HUP/ERR are sticky:
  /// they arrive on one edge, possibly together with the last data).
  [[nodiscard]] bool may_read() const noexcept { return !read_.drained || read_.ready || read_closed_; }
  /// Tells the hint that a read found the receive queue empty: it returned
  /// EAGAIN, or fewer bytes than asked for (a stream socket returns all it
  /// has). Every event seen so far concerned data now consumed.
  void mark_read_drained() noexcept {
    read_.drained = true;
    read_.ready = false;
  }

  /// Per-direction state; public for the reactor's dispatch only.
  struct direction {
    detail::task_node* waiter = nullptr;
    wait_awaiter* awaiter = nullptr;
    bool ready = false;    // an event arrived while nobody waited
    bool drained = false;  // see may_read()
  };
  /// Called by the reactor with epoll event bits.
  void on_events(std::uint32_t events) noexcept;

 private:
  event_loop* loop_;
  int fd_;
  direction read_;
  direction write_;
  bool read_closed_ = false;
};

class async_fd::wait_awaiter : public detail::cancel_hook {
 public:
  wait_awaiter(async_fd& fd, direction& dir) noexcept : fd_(&fd), dir_(&dir) {}
  // Movable before it is awaited (wrappers such as with_timeout store it).
  wait_awaiter(wait_awaiter&&) noexcept = default;
  wait_awaiter& operator=(wait_awaiter&&) = delete;
  [[nodiscard]] bool await_ready() noexcept {
    // Readiness seen since the last wait: consume it without suspending
    // (unless the task is cancelled: await_suspend throws, and the
    // readiness stays for a later wait).
    if (dir_->ready && !detail::cancel_pending()) {
      dir_->ready = false;
      dir_->drained = false;
      return true;
    }
    return false;
  }
  bool await_suspend(std::coroutine_handle<> h);
  void await_resume() const;

 private:
  friend class async_fd;
  static void on_cancel_hook(cancel_hook* self) noexcept;
  async_fd* fd_;
  direction* dir_;
  bool cancelled_ = false;
  bool closed_ = false;
};

inline async_fd::wait_awaiter async_fd::wait_readable() noexcept { return {*this, read_}; }
inline async_fd::wait_awaiter async_fd::wait_writable() noexcept { return {*this, write_}; }

}  // namespace spindle
