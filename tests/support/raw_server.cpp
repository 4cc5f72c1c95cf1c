// raw_server: see the header for the design and the shutdown steps.

#include "support/raw_server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <system_error>
#include <utility>

namespace spindle::test {

namespace {

using steady = std::chrono::steady_clock;

[[noreturn]] void throw_errno(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

// Milliseconds left until `deadline`, for poll() (at least 0, rounded up so
// that a poll never returns just before the deadline and spins).
int millis_until(steady::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - steady::now()).count();
  return left <= 0 ? 0 : left > 60'000 ? 60'000 : static_cast<int>(left);
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

// The Content-Length of a request head (0 without one; nullopt if unreadable).
std::optional<std::size_t> content_length(std::string_view head) {
  std::size_t pos = head.find("\r\n");
  while (pos != std::string_view::npos && pos + 2 < head.size()) {
    const std::size_t start = pos + 2;
    const std::size_t end = head.find("\r\n", start);
    const std::string_view line = head.substr(start, end - start);
    pos = end;
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || !iequals(line.substr(0, colon), "content-length")) continue;
    std::string_view v = line.substr(colon + 1);
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    std::size_t n = 0;
    const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc() || p != v.data() + v.size()) return std::nullopt;
    return n;
  }
  return 0;
}

}  // namespace

// ---- raw_connection -------------------------------------------------------------

raw_connection::~raw_connection() { close(); }

bool raw_connection::stopping() const noexcept { return server_.stopping_.load(); }

std::optional<std::size_t> raw_connection::read_more(steady::time_point deadline) {
  if (fd_ < 0 || closed_) return 0;
  for (;;) {
    pollfd p{fd_, POLLIN, 0};
    const int ready = ::poll(&p, 1, millis_until(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) break;
    if (ready == 0) return std::nullopt;
    char buf[16 * 1024];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n > 0) {
      buffer_.append(buf, static_cast<std::size_t>(n));
      return static_cast<std::size_t>(n);
    }
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (steady::now() >= deadline) return std::nullopt;
      continue;
    }
    break;  // EOF or an error (ECONNRESET)
  }
  closed_ = true;
  return 0;
}

std::optional<std::string> raw_connection::read_request(std::chrono::milliseconds timeout) {
  const steady::time_point deadline = steady::now() + timeout;
  std::size_t head_end = std::string::npos;
  while ((head_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
    if (buffer_.size() > max_head_bytes) return std::nullopt;
    const auto n = read_more(deadline);
    if (!n || *n == 0) return std::nullopt;
  }
  std::string head = buffer_.substr(0, head_end + 4);
  const std::optional<std::size_t> length = content_length(head);
  if (!length) return std::nullopt;
  while (buffer_.size() < head.size() + *length) {
    const auto n = read_more(deadline);
    if (!n || *n == 0) return std::nullopt;
  }
  std::string request = buffer_.substr(0, head.size() + *length);
  buffer_.erase(0, request.size());
  server_.record(std::move(head));
  return request;
}

bool raw_connection::write(std::string_view data) {
  if (fd_ < 0) return false;
  const steady::time_point deadline = steady::now() + write_timeout;
  while (!data.empty()) {
    const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd_, POLLOUT, 0};
      const int ready = ::poll(&p, 1, millis_until(deadline));
      if (ready == 0) return false;  // the peer stopped reading for write_timeout
      if (ready < 0 && errno != EINTR) return false;
      continue;  // writable, or an error that the next send reports
    }
    return false;  // EPIPE, ECONNRESET, or shut down by the destructor
  }
  return true;
}

void raw_connection::shutdown_write() noexcept {
  if (fd_ >= 0) ::shutdown(fd_, SHUT_WR);
}

void raw_connection::reset() noexcept {
  if (fd_ < 0) return;
  const linger l{1, 0};  // close() sends an RST and drops unsent data
  ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  close();
}

void raw_connection::close() noexcept {
  // The lock: the destructor's shut_down() must not see the number after
  // the close (it could belong to another descriptor by then).
  const std::lock_guard lock(mutex_);
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void raw_connection::shut_down() noexcept {
  const std::lock_guard lock(mutex_);  // see close()
  if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
}

bool raw_connection::wait_closed(std::chrono::milliseconds timeout) {
  const steady::time_point deadline = steady::now() + timeout;
  for (;;) {
    // Bytes the peer sends meanwhile are kept, but not without bound.
    if (buffer_.size() > max_head_bytes) buffer_.erase(0, buffer_.size() - max_head_bytes);
    const auto n = read_more(deadline);
    if (!n) return false;
    if (*n == 0) return true;
  }
}

std::string raw_connection::peer_sent_after() { return std::exchange(buffer_, std::string()); }

// ---- raw_server -----------------------------------------------------------------

raw_server::raw_server(handler h) : handler_(std::move(h)) {
  listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (listener_ < 0) throw_errno("raw_server: socket");
  try {
    const int one = 1;
    ::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);  // loopback only
    a.sin_port = 0;
    if (::bind(listener_, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0)
      throw_errno("raw_server: bind");
    if (::listen(listener_, 128) != 0) throw_errno("raw_server: listen");
    socklen_t len = sizeof a;
    if (::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
      throw_errno("raw_server: getsockname");
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  } catch (...) {
    ::close(listener_);
    throw;
  }
}

raw_server::~raw_server() {
  // 1. No more connections.
  stopping_.store(true);
  // Wakes the accept thread's poll at once (accept then fails); accept_poll
  // is only the fallback. Closed after the join: the number stays ours
  // while the thread may use it.
  ::shutdown(listener_, SHUT_RDWR);
  acceptor_.join();
  ::close(listener_);
  // 2. Wake every handler blocked on its socket.
  std::unique_lock lock(mutex_);
  for (worker& w : workers_)
    if (!w.done) w.conn->shut_down();
  // 3. Wait for them, bounded.
  if (!idle_.wait_for(lock, stop_timeout, [this] { return active_ == 0; })) {
    std::fprintf(stderr,
                 "raw_server: %zu handler(s) still running %lld s after their sockets were shut down; "
                 "a handler must return on a failed read or write or on stopping()\n",
                 active_, static_cast<long long>(stop_timeout.count()));
    std::abort();
  }
  std::list<worker> all = std::move(workers_);
  lock.unlock();
  for (worker& w : all) w.thread.join();
}

std::string raw_server::base_url() const { return "http://127.0.0.1:" + std::to_string(port_); }

std::size_t raw_server::connections() const noexcept { return accepted_.load(); }

std::vector<std::string> raw_server::requests() const {
  const std::lock_guard lock(mutex_);
  return requests_;
}

std::size_t raw_server::active() const {
  const std::lock_guard lock(mutex_);
  return active_;
}

bool raw_server::wait_idle(std::chrono::milliseconds limit) const {
  std::unique_lock lock(mutex_);
  return idle_.wait_for(lock, limit, [this] { return active_ == 0; });
}

void raw_server::record(std::string head) {
  const std::lock_guard lock(mutex_);
  requests_.push_back(std::move(head));
}

void raw_server::accept_loop() {
  while (!stopping_.load()) {
    join_finished();
    pollfd p{listener_, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(accept_poll.count()));
    if (ready <= 0) continue;  // timeout (look at the flag again) or EINTR
    const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) continue;  // EAGAIN, ECONNABORTED, EMFILE: poll bounds the retry
    const std::size_t index = accepted_.fetch_add(1);
    const std::lock_guard lock(mutex_);
    if (active_ >= max_connections) {
      ::close(fd);
      continue;
    }
    worker& w = workers_.emplace_back();
    w.conn.reset(new raw_connection(*this, fd, index));
    ++active_;
    try {
      w.thread = std::thread([this, &w] { serve(&w); });
    } catch (const std::system_error&) {
      // No thread to be had: the connection is closed, as over the limit.
      --active_;
      workers_.pop_back();
    }
  }
  join_finished();
}

void raw_server::serve(worker* w) noexcept {
  raw_connection& c = *w->conn;
  try {
    handler_(c);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "raw_server: the handler of connection %zu threw: %s\n", c.index(), e.what());
  } catch (...) {
    std::fprintf(stderr, "raw_server: the handler of connection %zu threw\n", c.index());
  }
  c.close();
  const std::lock_guard lock(mutex_);
  w->done = true;
  --active_;
  idle_.notify_all();
}

// Joins the threads of handlers that returned (they are ending, if not
// ended: the join is short) and forgets their connections.
void raw_server::join_finished() {
  std::list<worker> finished;
  {
    const std::lock_guard lock(mutex_);
    for (auto it = workers_.begin(); it != workers_.end();) {
      auto next = std::next(it);
      if (it->done) finished.splice(finished.end(), workers_, it);
      it = next;
    }
  }
  for (worker& w : finished) w.thread.join();
}

}  // namespace spindle::test
