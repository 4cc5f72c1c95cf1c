#include "spindle/async_fd.hpp"

#include <sys/epoll.h>

#include <cerrno>

#include "detail/loop_access.hpp"
#include "spindle/event_loop.hpp"

namespace spindle {

async_fd::async_fd(event_loop& loop, int fd) : loop_(&loop), fd_(fd) {
  detail::loop_access::check_owner(loop, "async_fd::async_fd");
  epoll_event ev{};
  // Edge-triggered, registered once: a wait costs no syscall.
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = this;
  if (::epoll_ctl(detail::loop_access::epoll_fd(loop), EPOLL_CTL_ADD, fd, &ev) != 0) {
    throw system_error("epoll_ctl(ADD fd " + std::to_string(fd) + ")", errno);
  }
  ++detail::loop_access::io_registrations(loop);
}

async_fd::~async_fd() {
  // ENOENT/EBADF (the fd was closed first) leave nothing registered either.
  epoll_event ev{};
  (void)::epoll_ctl(detail::loop_access::epoll_fd(*loop_), EPOLL_CTL_DEL, fd_, &ev);
  --detail::loop_access::io_registrations(*loop_);
  // A task still waiting would never wake: fail its wait instead.
  for (direction* d : {&read_, &write_}) {
    if (d->waiter != nullptr) {
      detail::task_node* t = d->waiter;
      d->awaiter->closed_ = true;
      d->waiter = nullptr;
      d->awaiter = nullptr;
      t->wake();
    }
  }
}

namespace {
void signal(async_fd::direction& d) noexcept {
  d.drained = false;
  if (d.waiter != nullptr) {
    detail::task_node* t = d.waiter;
    d.waiter = nullptr;
    d.awaiter = nullptr;
    t->wake();
  } else {
    d.ready = true;
  }
}
}  // namespace

void async_fd::on_events(std::uint32_t events) noexcept {
  if ((events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) read_closed_ = true;
  if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) signal(read_);
  if ((events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0) signal(write_);
}

bool async_fd::wait_awaiter::await_suspend(std::coroutine_handle<> h) {
  detail::task_node& t = detail::current_task("async_fd::wait_readable/wait_writable");
  if (&t.loop() != fd_->loop_) throw usage_error("async_fd awaited from a task on another event_loop");
  if (dir_->waiter != nullptr) {
    throw usage_error("another task is already waiting for this direction of fd " + std::to_string(fd_->fd_));
  }
  if (t.cancel_requested()) {
    cancelled_ = true;
    return false;
  }
  on_cancel = &on_cancel_hook;
  dir_->waiter = &t;
  dir_->awaiter = this;
  t.suspend(h, this);
  return true;
}

void async_fd::wait_awaiter::await_resume() const {
  if (cancelled_) throw cancelled_error();
  if (closed_) throw usage_error("async_fd destroyed while a task was waiting on it");
}

void async_fd::wait_awaiter::on_cancel_hook(cancel_hook* self) noexcept {
  auto* w = static_cast<wait_awaiter*>(self);
  detail::task_node* t = w->dir_->waiter;
  w->dir_->waiter = nullptr;
  w->dir_->awaiter = nullptr;
  w->cancelled_ = true;
  t->wake();
}

}  // namespace spindle
