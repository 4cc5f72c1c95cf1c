// resolver: the c-ares sockets and timer, each watched direction driven by
// a pump task (invariants 1-3 and 5 in dns.cpp).

#include <poll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>

#include "dns_impl.hpp"
#include "spindle/sleep.hpp"

namespace spindle::net {

using dns_detail::read_dir;
using dns_detail::watcher;
using dns_detail::write_dir;

namespace {

// Whether `fd` is readable (d == read_dir) or writable right now (a level
// check; see invariant 3). Errors and hang-ups count: the next
// ares_process_fd sees them and closes the socket.
bool ready_now(int fd, int d) noexcept {
  pollfd p{fd, static_cast<short>(d == read_dir ? POLLIN : POLLOUT), 0};
  int n;
  do {
    n = ::poll(&p, 1, 0);
  } while (n < 0 && errno == EINTR);
  return n > 0 && p.revents != 0;
}

}  // namespace

void resolver::impl::on_sock_state(void* data, ares_socket_t fd, int readable, int writable) noexcept {
  auto* self = static_cast<impl*>(data);
  try {
    self->on_socket_state(fd, readable != 0, writable != 0);
  } catch (...) {
    // The socket is unwatched: its queries end by c-ares' timeout.
    self->report_failure("socket-state callback");
  }
}

void resolver::impl::on_socket_state(int fd, bool readable, bool writable) {
  auto it = sockets.find(fd);
  if (!readable && !writable) {
    // c-ares closes the descriptor right after this returns (invariant 1).
    if (it != sockets.end()) {
      close_watcher(*it->second);
      sockets.erase(it);
    }
    return;
  }
  if (closed) return;
  if (it == sockets.end()) {
    auto w = std::make_shared<watcher>(watcher{this, fd, false, nullptr, false, {}});
    w->io = std::make_unique<async_fd>(loop, fd);
    it = sockets.emplace(fd, std::move(w)).first;
  }
  set_wanted(it->second, read_dir, readable);
  set_wanted(it->second, write_dir, writable);
}

void resolver::impl::set_wanted(const std::shared_ptr<watcher>& w, int d, bool wanted) {
  watcher::direction& dir = w->dirs[d];
  dir.wanted = wanted;
  if (wanted) {
    if (dir.pump.valid() && !dir.pump.done()) return;
    ++dir.gen;
    std::string name = w->is_timer ? std::string("dns timer")
                                   : "dns fd " + std::to_string(w->fd) + (d == read_dir ? " read" : " write");
    dir.pump = loop.spawn(pump(w, d, dir.gen), std::move(name));
  } else if (dir.pump.valid()) {
    // The pump may be the running task (its ares_process_fd got here): it
    // sees the new generation when that returns.
    ++dir.gen;
    dir.pump.cancel();
    dir.pump = {};
  }
}

void resolver::impl::close_watcher(watcher& w) noexcept {
  w.closed = true;
  for (auto& dir : w.dirs) {
    ++dir.gen;
    dir.wanted = false;
    // Cancelling a waiting pump removes its wait from the async_fd now,
    // so destroying the async_fd below finds no waiter.
    try {
      dir.pump.cancel();
    } catch (...) {
      report_failure("pump cancellation");
    }
    dir.pump = {};
  }
  w.io.reset();
}

void resolver::impl::ensure_pumps() {
  // Invariant 5: a loop's shutdown phase may have cancelled pumps whose
  // descriptors c-ares still uses.
  for (auto& [fd, w] : sockets) {
    for (int d : {read_dir, write_dir}) {
      if (w->dirs[d].wanted) set_wanted(w, d, true);
    }
  }
  if (timer && timer->dirs[read_dir].wanted) set_wanted(timer, read_dir, true);
}

void resolver::impl::on_ready(watcher& w, int d) {
  if (w.is_timer) {
    std::uint64_t expirations = 0;
    // EAGAIN (a stale readiness) is fine: c-ares just finds nothing due.
    (void)!::read(w.fd, &expirations, sizeof expirations);
    ares_process_fd(channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
  } else if (d == read_dir) {
    ares_process_fd(channel, w.fd, ARES_SOCKET_BAD);
  } else {
    ares_process_fd(channel, ARES_SOCKET_BAD, w.fd);
  }
  update_timer();
}

void resolver::impl::update_timer() {
  if (closed || !timer) return;
  timeval tv{};
  const timeval* next = ares_timeout(channel, nullptr, &tv);
  itimerspec spec{};
  if (next != nullptr) {
    // it_value zero would disarm the timer: a deadline already due is 1 ns away.
    long long ns = static_cast<long long>(next->tv_sec) * 1'000'000'000LL + next->tv_usec * 1000LL;
    if (ns <= 0) ns = 1;
    spec.it_value.tv_sec = static_cast<time_t>(ns / 1'000'000'000LL);
    spec.it_value.tv_nsec = static_cast<long>(ns % 1'000'000'000LL);
  }
  if (::timerfd_settime(timer->fd, 0, &spec, nullptr) != 0) throw system_error("timerfd_settime", errno);
  set_wanted(timer, read_dir, next != nullptr);
}

namespace dns_detail {

// Drives one direction of one watcher (invariants 2 and 3). It ends when its
// watcher closes or its generation moves on (both checked after every
// suspension and every ares_process_fd), or when it is cancelled.
task<void> pump(std::shared_ptr<watcher> param, int d, std::uint64_t gen) {
  // A local, not the parameter, holds the watcher: it is released when the
  // body ends, while the frame (and its parameters) lives as long as the
  // join_handle kept in the watcher.
  const std::shared_ptr<watcher> w = std::move(param);
  bool woken = false;
  int rounds = 0;
  while (w->live(d, gen)) {
    if (!woken && !ready_now(w->fd, d)) {
      if (d == read_dir) {
        co_await w->io->wait_readable();
      } else {
        co_await w->io->wait_writable();
      }
      woken = true;
      rounds = 0;
      continue;
    }
    woken = false;
    w->owner->on_ready(*w, d);
    if (++rounds == rounds_before_yield) {
      rounds = 0;
      co_await yield();
    }
  }
}

}  // namespace dns_detail

}  // namespace spindle::net
