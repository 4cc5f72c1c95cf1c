// TCP streams, connect (Happy Eyeballs) and listeners, on async_fd.

#include "spindle/net/tcp.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include "spindle/cancel_scope.hpp"
#include "spindle/event.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/net/dns.hpp"
#include "spindle/sleep.hpp"
#include "spindle/task_group.hpp"

namespace spindle::net {

namespace {

event_loop& running_loop(const char* what) {
  event_loop* loop = event_loop::current();
  if (loop == nullptr) throw usage_error(std::string(what) + " needs a running event_loop on this thread");
  return *loop;
}

std::string errno_text(int e) { return std::strerror(e); }

void set_int_option(int fd, int level, int name, int value, const char* what) {
  if (::setsockopt(fd, level, name, &value, sizeof value) != 0) throw system_error(what, errno);
}

// The local or peer address of a socket (getsockname / getpeername); empty
// when closed or on error.
socket_address socket_name(int fd, int (*query)(int, sockaddr*, socklen_t*)) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (fd < 0 || query(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return {};
  return socket_address::from(reinterpret_cast<sockaddr*>(&ss), len);
}

// Closes a descriptor on scope exit unless released (connect and bind paths).
struct fd_guard {
  int fd;
  ~fd_guard() {
    if (fd >= 0) ::close(fd);
  }
  int release() noexcept { return std::exchange(fd, -1); }
};

}  // namespace

// ---- tcp_stream -------------------------------------------------------------

tcp_stream::tcp_stream(int fd) : fd_(fd) {
  try {
    io_ = std::make_unique<async_fd>(running_loop("tcp_stream"), fd);
  } catch (...) {
    ::close(fd);
    fd_ = -1;
    throw;
  }
}

tcp_stream::tcp_stream(tcp_stream&& o) noexcept : fd_(std::exchange(o.fd_, -1)), io_(std::move(o.io_)) {}

tcp_stream& tcp_stream::operator=(tcp_stream&& o) noexcept {
  if (this != &o) {
    close();
    fd_ = std::exchange(o.fd_, -1);
    io_ = std::move(o.io_);
  }
  return *this;
}

tcp_stream::~tcp_stream() { close(); }

void tcp_stream::close() noexcept {
  io_.reset();  // out of the reactor before the number can be reused
  if (fd_ >= 0) ::close(std::exchange(fd_, -1));
}

void tcp_stream::reset() noexcept {
  if (fd_ >= 0) {
    linger l{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  close();
}

void tcp_stream::shutdown_write() noexcept {
  if (fd_ >= 0) ::shutdown(fd_, SHUT_WR);
}

task<std::size_t> tcp_stream::read_some(std::span<std::byte> buffer) {
  // A cancellation point even when data is waiting (checks first).
  if (detail::cancel_pending()) throw cancelled_error();
  if (buffer.empty()) co_return 0;
  for (;;) {
    if (fd_ < 0) throw connection_error("read on a closed tcp_stream");
    // The last read emptied the queue and nothing has arrived since: wait
    // first instead of paying for a recv that fails with EAGAIN.
    if (!io_->may_read()) co_await io_->wait_readable();
    const ssize_t n = ::recv(fd_, buffer.data(), buffer.size(), 0);
    if (n >= 0) {
      if (static_cast<std::size_t>(n) < buffer.size()) io_->mark_read_drained();
      co_return static_cast<std::size_t>(n);
    }
    const int e = errno;
    if (e == EINTR) continue;
    if (e != EAGAIN && e != EWOULDBLOCK)
      throw connection_error("read from " + peer_address().to_string() + ": " + errno_text(e));
    io_->mark_read_drained();
    co_await io_->wait_readable();  // even with a sticky hang-up: never spin on EAGAIN
  }
}

task<void> tcp_stream::write_all(std::span<const std::byte> data) {
  if (detail::cancel_pending()) throw cancelled_error();  // (checks first, as every cancellation point)
  for (;;) {
    data = data.subspan(try_write(std::string_view(reinterpret_cast<const char*>(data.data()), data.size())));
    if (data.empty()) co_return;
    co_await io_->wait_writable();  // the send buffer is full
  }
}

std::size_t tcp_stream::try_write(std::string_view data) {
  if (data.empty()) return 0;
  if (fd_ < 0) throw connection_error("write on a closed tcp_stream");
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n >= 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    const int e = errno;
    if (e == EINTR) continue;
    if (e == EAGAIN || e == EWOULDBLOCK) break;
    throw connection_error("write to " + peer_address().to_string() + ": " + errno_text(e));
  }
  return done;
}

async_fd::wait_awaiter tcp_stream::readable() {
  if (!io_) throw connection_error("readable() on a closed tcp_stream");
  return io_->wait_readable();
}

async_fd::wait_awaiter tcp_stream::writable() {
  if (!io_) throw connection_error("writable() on a closed tcp_stream");
  return io_->wait_writable();
}

void tcp_stream::set_nodelay(bool on) {
  set_int_option(fd_, IPPROTO_TCP, TCP_NODELAY, on ? 1 : 0, "setsockopt(TCP_NODELAY)");
}

void tcp_stream::set_keepalive(bool on, std::chrono::seconds idle, std::chrono::seconds interval, int count) {
  set_int_option(fd_, SOL_SOCKET, SO_KEEPALIVE, on ? 1 : 0, "setsockopt(SO_KEEPALIVE)");
  if (!on) return;
  set_int_option(fd_, IPPROTO_TCP, TCP_KEEPIDLE, static_cast<int>(idle.count()), "setsockopt(TCP_KEEPIDLE)");
  set_int_option(fd_, IPPROTO_TCP, TCP_KEEPINTVL, static_cast<int>(interval.count()),
                 "setsockopt(TCP_KEEPINTVL)");
  set_int_option(fd_, IPPROTO_TCP, TCP_KEEPCNT, count, "setsockopt(TCP_KEEPCNT)");
}

socket_address tcp_stream::local_address() const { return socket_name(fd_, ::getsockname); }

socket_address tcp_stream::peer_address() const { return socket_name(fd_, ::getpeername); }

// ---- connect ----------------------------------------------------------------

namespace {

std::string millis(duration d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms";
}

// The attempts of a Happy Eyeballs race (one per address).
struct attempt_state {
  event started{"connect attempt started"};
  event failed{"connect attempt failed"};
  std::string error;
  bool timed_out = false;
};

task<void> attempt(socket_address address, attempt_state* previous, attempt_state& me, connect_options opts,
                   std::optional<tcp_stream>& winner, task_group& group) {
  if (previous != nullptr) {
    // Start when the previous attempt fails, or attempt_delay after it started.
    co_await previous->started.wait();
    co_await move_on_after(opts.attempt_delay, previous->failed.wait());
  }
  me.started.set();
  std::optional<tcp_stream> connected;
  try {
    connected.emplace(co_await connect(address, opts));
  } catch (const timeout_error& e) {
    me.timed_out = true;
    me.error = e.what();
  } catch (const connect_error& e) {
    me.error = e.what();
  }
  if (connected) {
    if (!winner) {
      winner.emplace(std::move(*connected));
      group.cancel();  // the others lose
    }
    co_return;
  }
  me.failed.set();
}

}  // namespace

task<tcp_stream> connect(socket_address address, connect_options opts) {
  if (address.empty()) throw connect_error("connect: empty address");
  const int fd = ::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw connect_error("connect to " + address.to_string() + ": socket(): " + errno_text(errno));
  tcp_stream stream(fd);  // owns the descriptor from here
  if (::connect(fd, address.data(), address.size()) != 0) {
    if (errno != EINPROGRESS)
      throw connect_error("connect to " + address.to_string() + ": " + errno_text(errno));
    bool writable = true;
    if (opts.timeout) {
      writable = co_await move_on_after(*opts.timeout, stream.io_->wait_writable());
    } else {
      co_await stream.io_->wait_writable();
    }
    if (!writable)
      throw timeout_error("connect to " + address.to_string() + " timed out after " + millis(*opts.timeout));
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) throw connect_error("connect to " + address.to_string() + ": " + errno_text(err));
  }
  if (opts.nodelay) stream.set_nodelay(true);
  co_return stream;
}

task<tcp_stream> connect(std::vector<socket_address> addresses, connect_options opts) {
  if (addresses.empty()) throw connect_error("connect: no addresses to try");
  if (addresses.size() == 1) co_return co_await connect(addresses.front(), opts);
  std::vector<std::unique_ptr<attempt_state>> states;
  for (std::size_t i = 0; i < addresses.size(); ++i) states.push_back(std::make_unique<attempt_state>());
  std::optional<tcp_stream> winner;
  connect_options each = opts;
  each.timeout = std::nullopt;  // the race as a whole is bounded below
  auto race = [&](task_group& g) -> task<void> {
    for (std::size_t i = 0; i < addresses.size(); ++i) {
      g.spawn(attempt(addresses[i], i == 0 ? nullptr : states[i - 1].get(), *states[i], each, winner, g),
              "connect attempt");
    }
    co_return;
  };
  bool finished = true;
  if (opts.timeout) {
    finished = co_await move_on_after(*opts.timeout, with_task_group(race));
  } else {
    co_await with_task_group(race);
  }
  if (winner) co_return std::move(*winner);
  std::string tried;
  for (std::size_t i = 0; i < addresses.size(); ++i) {
    if (states[i]->error.empty()) continue;
    tried += tried.empty() ? "" : "; ";
    tried += states[i]->error;
  }
  if (!finished) {
    throw timeout_error("connect timed out after " + millis(*opts.timeout) + " trying " +
                        std::to_string(addresses.size()) + " addresses" +
                        (tried.empty() ? "" : " (" + tried + ")"));
  }
  throw connect_error("connect: every address failed: " + tried);
}

task<tcp_stream> connect(resolver& dns, std::string host, std::uint16_t port, connect_options opts) {
  std::vector<socket_address> addresses;
  if (opts.timeout) {
    const auto deadline = saturating_add(event_loop::current()->now(), *opts.timeout);
    auto found = co_await move_on_at(deadline, dns.resolve(host, port));
    if (!found)
      throw timeout_error("connect to " + host + ": name lookup timed out after " + millis(*opts.timeout));
    addresses = std::move(*found);
    const time_point now = event_loop::current()->now();
    if (deadline <= now) throw timeout_error("connect to " + host + " timed out after lookup");
    const duration left = deadline - now;  // (compared first: deadline may be near time_point::min())
    if (deadline != time_point::max()) opts.timeout = left;
  } else {
    addresses = co_await dns.resolve(host, port);
  }
  co_return co_await connect(std::move(addresses), opts);
}

// ---- tcp_listener -------------------------------------------------------------

tcp_listener tcp_listener::bind(socket_address address, listen_options opts) {
  event_loop& loop = running_loop("tcp_listener::bind");
  const int fd = ::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw system_error("socket", errno);
  fd_guard guard{fd};
  if (opts.reuse_address) set_int_option(fd, SOL_SOCKET, SO_REUSEADDR, 1, "setsockopt(SO_REUSEADDR)");
  if (opts.reuse_port) set_int_option(fd, SOL_SOCKET, SO_REUSEPORT, 1, "setsockopt(SO_REUSEPORT)");
  if (::bind(fd, address.data(), address.size()) != 0)
    throw system_error("bind " + address.to_string(), errno);
  if (::listen(fd, opts.backlog) != 0) throw system_error("listen", errno);
  tcp_listener l;
  l.io_ = std::make_unique<async_fd>(loop, fd);
  l.fd_ = guard.release();
  return l;
}

tcp_listener::tcp_listener(tcp_listener&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)), spare_(std::exchange(o.spare_, -1)), io_(std::move(o.io_)) {}

tcp_listener& tcp_listener::operator=(tcp_listener&& o) noexcept {
  if (this != &o) {
    close();
    fd_ = std::exchange(o.fd_, -1);
    spare_ = std::exchange(o.spare_, -1);
    io_ = std::move(o.io_);
  }
  return *this;
}

tcp_listener::~tcp_listener() { close(); }

void tcp_listener::close() noexcept {
  io_.reset();
  if (fd_ >= 0) ::close(std::exchange(fd_, -1));
  if (spare_ >= 0) ::close(std::exchange(spare_, -1));
}

bool tcp_listener::reserve_descriptor() noexcept {
  if (spare_ < 0) spare_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  return spare_ >= 0;
}

bool tcp_listener::shed(std::string_view farewell) noexcept {
  if (fd_ < 0 || spare_ < 0) return false;
  ::close(std::exchange(spare_, -1));
  const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd >= 0) {
    if (!farewell.empty()) {
      [[maybe_unused]] const ssize_t n = ::send(fd, farewell.data(), farewell.size(), MSG_NOSIGNAL);
    }
    ::close(fd);
  }
  reserve_descriptor();
  return fd >= 0;
}

task<tcp_stream> tcp_listener::accept_or_exhausted(int* exhausted) {
  *exhausted = 0;
  if (detail::cancel_pending()) throw cancelled_error();  // (checks first, as every cancellation point)
  for (;;) {
    if (fd_ < 0) throw usage_error("accept on a closed tcp_listener");
    const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) co_return tcp_stream(fd);
    const int e = errno;
    switch (e) {
      case EINTR:
      case ECONNABORTED:
      case EPROTO: continue;
      case EAGAIN: co_await io_->wait_readable(); continue;
      case EMFILE:
      case ENFILE:
      case ENOBUFS:
      case ENOMEM: *exhausted = e; co_return tcp_stream();
      default: throw system_error("accept", e);
    }
  }
}

socket_address tcp_listener::local_address() const { return socket_name(fd_, ::getsockname); }

task<tcp_stream> tcp_listener::accept() {
  for (;;) {
    int exhausted = 0;
    tcp_stream s = co_await accept_or_exhausted(&exhausted);
    if (exhausted == 0) co_return s;
    // Out of descriptors or memory: back off instead of spinning or failing the server.
    co_await sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace spindle::net
