#include "front_server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <span>
#include <stdexcept>
#include <system_error>

#include "spindle/http/connection.hpp"
#include "spindle/http/errors.hpp"
#include "spindle/http/parser.hpp"

namespace aggregator {

namespace http = spindle::http;

struct front_server::connection {
  explicit connection(int f) : fd(f) {}
  int fd;
  std::string pending;                              // bytes read past the previous request (pipelining)
  std::chrono::steady_clock::time_point queued_at;  // guarded by front_server::mutex_
  bool in_worker = false;                           // guarded by front_server::mutex_
};

namespace {

[[noreturn]] void fail(const char* what) { throw std::system_error(errno, std::generic_category(), what); }

/// Waits until `fd` is ready for `events` or `timeout` passes.
bool wait_fd(int fd, short events, std::chrono::milliseconds timeout) {
  pollfd p{fd, events, 0};
  for (;;) {
    const int r = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return false;
  }
}

bool send_all(int fd, std::string_view data, std::chrono::milliseconds timeout) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<std::size_t>(n));
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!wait_fd(fd, POLLOUT, timeout)) return false;
    } else {
      return false;
    }
  }
  return true;
}

http::response plain(int status, std::string text) {
  http::response r;
  r.status = status;
  r.headers.add("Content-Type", "text/plain; charset=utf-8");
  r.body = std::move(text);
  return r;
}

}  // namespace

front_server::front_server(sync_handler handler, front_options opts)
    : handler_(std::move(handler)), opts_(std::move(opts)) {}

front_server::~front_server() { stop(); }

void front_server::start() {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) fail("socket");
  const int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(opts_.port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) fail("bind");
  if (::listen(listen_fd_, 1024) != 0) fail("listen");
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);

  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epoll_fd_ < 0 || wake_fd_ < 0) fail("epoll/eventfd");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = listen_fd_;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
  ev.data.fd = wake_fd_;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);

  io_thread_ = std::thread([this] { io_loop(); });
  for (std::size_t i = 0; i < opts_.workers; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

void front_server::io_loop() {
  pthread_setname_np(pthread_self(), (opts_.name + "-io").substr(0, 15).c_str());
  std::array<epoll_event, 64> events{};
  for (;;) {
    const int n = ::epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    for (int i = 0; i < n; ++i) {
      const int fd = events[static_cast<std::size_t>(i)].data.fd;
      if (fd == wake_fd_) return;  // stop(): the rest is done there
      if (fd == listen_fd_) {
        for (;;) {
          const int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) break;  // EAGAIN, or a transient error: epoll tells us again
          std::unique_lock lock(mutex_);
          if (conns_.size() >= opts_.max_connections) {
            lock.unlock();
            ++rejected_;
            ::close(c);
            continue;
          }
          const int one = 1;
          ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          ++accepted_;
          auto conn = std::make_shared<connection>(c);
          conns_.emplace(c, conn);
          epoll_event ev{};
          ev.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT;
          ev.data.fd = c;
          ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, c, &ev);
        }
        continue;
      }
      // A connection became readable: hand it to a worker. ONESHOT keeps
      // it disarmed until the worker re-arms it.
      std::lock_guard lock(mutex_);
      auto it = conns_.find(fd);
      // Not found or already with a worker: a stale event for a descriptor
      // number that was closed and reused within this batch.
      if (it == conns_.end() || it->second->in_worker) continue;
      it->second->in_worker = true;
      it->second->queued_at = std::chrono::steady_clock::now();
      queue_.push_back(it->second);
      queue_cv_.notify_one();
    }
  }
}

void front_server::worker_loop(std::size_t index) {
  pthread_setname_np(pthread_self(), (opts_.name + "-w" + std::to_string(index)).substr(0, 15).c_str());
  for (;;) {
    std::shared_ptr<connection> c;
    {
      std::unique_lock lock(mutex_);
      queue_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, nothing left
      c = std::move(queue_.front());
      queue_.pop_front();
      queue_wait_.add(std::chrono::steady_clock::now() - c->queued_at);
    }
    ++busy_;
    const bool keep = serve(*c);
    --busy_;
    if (keep) {
      rearm(c);
    } else {
      close_connection(c);
    }
  }
}

bool front_server::serve(connection& c) {
  std::array<char, 16 * 1024> buf{};
  http::parse_limits limits;
  limits.max_header_bytes = opts_.max_header_bytes;
  limits.max_body_bytes = opts_.max_body_bytes;
  for (;;) {
    http::message_parser parser(http::message_parser::kind::request, limits);
    const auto started = std::chrono::steady_clock::now();
    try {
      while (!parser.complete()) {
        if (!c.pending.empty()) {
          const std::size_t used = parser.feed(std::span<const char>(c.pending.data(), c.pending.size()));
          c.pending.erase(0, used);
          continue;
        }
        const ssize_t n = ::recv(c.fd, buf.data(), buf.size(), 0);
        if (n > 0) {
          const std::size_t used =
              parser.feed(std::span<const char>(buf.data(), static_cast<std::size_t>(n)));
          c.pending.append(buf.data() + used, static_cast<std::size_t>(n) - used);
        } else if (n == 0) {
          return false;  // the client closed (between requests, or mid-request)
        } else if (errno == EAGAIN || errno == EINTR) {
          // Between requests with nothing buffered: back to the epoll set.
          if (parser.idle()) return true;
          const auto left = opts_.read_timeout - std::chrono::duration_cast<std::chrono::milliseconds>(
                                                     std::chrono::steady_clock::now() - started);
          if (left.count() <= 0 || !wait_fd(c.fd, POLLIN, left)) {
            ++bad_requests_;
            (void)send_all(c.fd, http::serialize(plain(408, "request timeout\n")), opts_.read_timeout);
            count_status(408);
            return false;
          }
        } else {
          return false;
        }
      }
    } catch (const http::protocol_error& e) {
      ++bad_requests_;
      int status = 400;
      switch (parser.failure()) {
        case http::parse_failure::head_too_large:
        case http::parse_failure::too_many_fields: status = 431; break;
        case http::parse_failure::body_too_large: status = 413; break;
        case http::parse_failure::version_not_supported: status = 505; break;
        default: break;
      }
      (void)send_all(c.fd, http::serialize(plain(status, std::string(e.what()) + "\n")), opts_.read_timeout);
      count_status(status);
      return false;
    }

    ++requests_;
    const auto read_done = std::chrono::steady_clock::now();
    const http::request& req = parser.request_message();
    http::response resp;
    try {
      resp = handler_(req);
    } catch (const std::exception& e) {
      ++handler_exceptions_;
      resp = plain(500, std::string("internal error: ") + e.what() + "\n");
    }
    bool stopping = false;
    {
      std::lock_guard lock(mutex_);
      stopping = stopping_;
    }
    const bool keep_alive = parser.keep_alive() && !stopping;
    resp.headers.set("Connection", keep_alive ? "keep-alive" : "close");
    count_status(resp.status);
    if (!send_all(c.fd, http::serialize(resp, req.method == "HEAD"), opts_.read_timeout)) return false;
    {
      std::lock_guard lock(service_mutex_);
      service_time_.add(std::chrono::steady_clock::now() - read_done);
    }
    if (!keep_alive) return false;
    // Pipelined bytes already read: serve them now; else back to epoll.
    if (c.pending.empty()) return true;
  }
}

void front_server::rearm(const std::shared_ptr<connection>& c) {
  std::unique_lock lock(mutex_);
  if (stopping_) {
    lock.unlock();
    close_connection(c);
    return;
  }
  c->in_worker = false;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT;
  ev.data.fd = c->fd;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c->fd, &ev);
}

void front_server::close_connection(const std::shared_ptr<connection>& c) {
  std::lock_guard lock(mutex_);
  // Removed from the map and from epoll before the descriptor is closed,
  // so a new connection reusing the number cannot be confused with it.
  conns_.erase(c->fd);
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c->fd, nullptr);
  ::close(c->fd);
  c->fd = -1;
}

void front_server::stop() {
  std::lock_guard stop_lock(stop_mutex_);
  if (stopped_) return;
  stopped_ = true;
  if (!io_thread_.joinable()) return;  // never started
  // 1. Stop accepting: the I/O thread returns at the wake-up.
  const std::uint64_t one = 1;
  (void)::write(wake_fd_, &one, sizeof one);
  io_thread_.join();
  ::close(listen_fd_);
  // 2. Close idle connections; 3. workers finish the request they are on.
  std::vector<std::shared_ptr<connection>> idle;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    for (auto& [fd, c] : conns_)
      if (!c->in_worker) idle.push_back(c);
    // Queued but not started: nothing of theirs has been read yet.
    for (auto& c : queue_) idle.push_back(c);
    queue_.clear();
  }
  queue_cv_.notify_all();
  for (auto& c : idle) close_connection(c);
  // 4. Join.
  for (auto& w : workers_) w.join();
  workers_.clear();
  {
    std::lock_guard lock(mutex_);
    for (auto& [fd, c] : conns_) ::close(fd);
    conns_.clear();
  }
  ::close(epoll_fd_);
  ::close(wake_fd_);
}

void front_server::samples::add(std::chrono::steady_clock::duration d) {
  const std::int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  sum += ns;
  if (ring.size() < 1024) {
    ring.push_back(ns);
  } else {
    ring[next] = ns;
    next = (next + 1) % ring.size();
  }
  ++total;
}

spindle::latency_summary front_server::samples::summary() const {
  spindle::latency_summary s;
  s.samples = total;
  s.sum = std::chrono::nanoseconds(sum);
  if (ring.empty()) return s;
  std::vector<std::int64_t> v = ring;
  std::sort(v.begin(), v.end());
  s.p50 = std::chrono::nanoseconds(v[v.size() / 2]);
  s.p99 = std::chrono::nanoseconds(v[std::min(v.size() - 1, v.size() * 99 / 100)]);
  return s;
}

void front_server::count_status(int status) {
  if (status >= 500) {
    ++s5xx_;
  } else if (status >= 400) {
    ++s4xx_;
  } else if (status >= 200 && status < 300) {
    ++s2xx_;
  }
}

front_statistics front_server::statistics() const {
  front_statistics s;
  s.workers = opts_.workers;
  s.busy_workers = busy_.load(std::memory_order_relaxed);
  {
    std::lock_guard lock(mutex_);
    s.queued = queue_.size();
    s.connections_open = conns_.size();
    s.queue_wait = queue_wait_.summary();
  }
  {
    std::lock_guard lock(service_mutex_);
    s.service_time = service_time_.summary();
  }
  s.connections_accepted = accepted_.load(std::memory_order_relaxed);
  s.connections_rejected = rejected_.load(std::memory_order_relaxed);
  s.requests = requests_.load(std::memory_order_relaxed);
  s.bad_requests = bad_requests_.load(std::memory_order_relaxed);
  s.responses_2xx = s2xx_.load(std::memory_order_relaxed);
  s.responses_4xx = s4xx_.load(std::memory_order_relaxed);
  s.responses_5xx = s5xx_.load(std::memory_order_relaxed);
  s.handler_exceptions = handler_exceptions_.load(std::memory_order_relaxed);
  return s;
}

void add_metrics(spindle::prometheus_exposition& e, const front_statistics& s, const std::string& name) {
  using spindle::metric_type;
  const spindle::prometheus_exposition::labels l{{"server", name}};
  e.add_sample("aggregator_front_workers", metric_type::gauge, "Worker threads.", l, double(s.workers));
  e.add_sample("aggregator_front_workers_busy", metric_type::gauge, "Workers serving a request now.", l,
               double(s.busy_workers));
  e.add_sample("aggregator_front_queued", metric_type::gauge, "Readable connections waiting for a worker.", l,
               double(s.queued));
  e.add_sample("aggregator_front_connections_open", metric_type::gauge, "Client connections open now.", l,
               double(s.connections_open));
  e.add_sample("aggregator_front_connections_accepted_total", metric_type::counter, "Connections accepted.",
               l, double(s.connections_accepted));
  e.add_sample("aggregator_front_connections_rejected_total", metric_type::counter,
               "Connections closed at once: over max_connections.", l, double(s.connections_rejected));
  e.add_sample("aggregator_front_requests_total", metric_type::counter, "Requests read.", l,
               double(s.requests));
  e.add_sample("aggregator_front_bad_requests_total", metric_type::counter,
               "Malformed, too large or too slow.", l, double(s.bad_requests));
  for (auto [cls, v] :
       {std::pair{"2xx", s.responses_2xx}, {"4xx", s.responses_4xx}, {"5xx", s.responses_5xx}}) {
    auto labels = l;
    labels.emplace_back("class", cls);
    e.add_sample("aggregator_front_responses_total", metric_type::counter, "Responses by status class.",
                 labels, double(v));
  }
  e.add_sample("aggregator_front_handler_exceptions_total", metric_type::counter,
               "Handlers that threw (answered 500).", l, double(s.handler_exceptions));
  auto summary = [&](const char* metric, const char* help, const spindle::latency_summary& v) {
    const auto sec = [](spindle::duration d) { return std::chrono::duration<double>(d).count(); };
    e.add_summary(metric, help, l, {{0.5, sec(v.p50)}, {0.99, sec(v.p99)}}, sec(v.sum), v.samples);
  };
  summary("aggregator_front_queue_wait_seconds", "A readable connection's wait for a worker (last 1,024).",
          s.queue_wait);
  summary("aggregator_front_service_seconds", "Request read to response written (last 1,024).",
          s.service_time);
}

}  // namespace aggregator
