#pragma once
/// \file
/// front_server: a classic threaded HTTP/1.1 server — handlers are ordinary
/// synchronous functions run on a fixed pool of plain std::threads, as with
/// gunicorn's threaded workers.
///
/// One I/O thread owns an epoll set with the listening socket and every
/// idle keep-alive connection; when a connection becomes readable it is
/// queued for the workers (EPOLLONESHOT: one worker at a time). A worker
/// reads and parses the request (spindle::http::message_parser, used as a
/// plain synchronous parser), calls the handler, writes the response, and
/// hands the connection back to the epoll set — so 64 keep-alive clients
/// are served by 16 workers without a thread per connection, and a slow
/// client holds a worker only while its request is arriving (bounded by
/// read_timeout).
///
/// Shutdown, in order: 1. stop accepting (the listening socket is closed);
/// 2. idle connections are closed; 3. workers finish the request they are
/// on (its response says Connection: close) and exit; 4. all threads are
/// joined.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "spindle/http/message.hpp"
#include "spindle/prometheus.hpp"
#include "spindle/thread_pool.hpp"

namespace aggregator {

/// A synchronous request handler, run on a worker thread.
using sync_handler = std::function<spindle::http::response(const spindle::http::request&)>;

struct front_options {
  std::string name = "front";
  std::uint16_t port = 0;  ///< 0: an ephemeral port (see port())
  std::size_t workers = 16;
  std::size_t max_connections = 1024;  ///< beyond: accepted and closed at once
  /// From a request's first byte to its end (slowloris), and for writing a response.
  std::chrono::milliseconds read_timeout{10'000};
  std::size_t max_header_bytes = 16 * 1024;
  std::uint64_t max_body_bytes = 1024 * 1024;
};

struct front_statistics {
  std::size_t workers = 0;
  std::size_t busy_workers = 0;
  std::size_t queued = 0;  ///< readable connections waiting for a worker
  std::uint64_t connections_accepted = 0;
  std::uint64_t connections_open = 0;
  std::uint64_t connections_rejected = 0;
  std::uint64_t requests = 0;
  std::uint64_t bad_requests = 0;
  std::uint64_t responses_2xx = 0;
  std::uint64_t responses_4xx = 0;
  std::uint64_t responses_5xx = 0;
  std::uint64_t handler_exceptions = 0;  ///< the handler threw: answered 500
  /// A readable connection's wait in the queue for a worker.
  spindle::latency_summary queue_wait;
  /// From a request's last byte read to its response's last byte written.
  spindle::latency_summary service_time;
};

/// **Thread safety:** start(), stop(), port() and statistics() from any
/// thread; the handler is called concurrently from the worker threads.
class front_server {
 public:
  front_server(sync_handler handler, front_options opts = {});
  /// stop().
  ~front_server();
  front_server(const front_server&) = delete;
  front_server& operator=(const front_server&) = delete;

  /// Binds 127.0.0.1:port and starts the I/O thread and the workers.
  void start();
  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  /// Graceful stop (see the file comment). Idempotent.
  void stop();
  [[nodiscard]] front_statistics statistics() const;

  struct connection;

 private:
  void io_loop();
  void worker_loop(std::size_t index);
  /// Serves requests on `c` while they are already buffered or readable;
  /// returns true if the connection goes back to the epoll set.
  bool serve(connection& c);
  void rearm(const std::shared_ptr<connection>& c);
  void close_connection(const std::shared_ptr<connection>& c);
  void count_status(int status);
  struct samples {
    void add(std::chrono::steady_clock::duration d);
    [[nodiscard]] spindle::latency_summary summary() const;
    std::vector<std::int64_t> ring;  // the last 1,024, in nanoseconds
    std::size_t next = 0;
    std::uint64_t total = 0;
    std::int64_t sum = 0;
  };

  sync_handler handler_;
  front_options opts_;
  int listen_fd_ = -1;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: wakes the I/O thread for stop()
  std::uint16_t port_ = 0;
  std::thread io_thread_;
  std::vector<std::thread> workers_;

  // Guards conns_, queue_ and stopping_: the I/O thread and the workers
  // hand connections to each other through them.
  mutable std::mutex mutex_;
  std::condition_variable queue_cv_;
  std::map<int, std::shared_ptr<connection>> conns_;
  std::deque<std::shared_ptr<connection>> queue_;
  bool stopping_ = false;
  samples queue_wait_;                // guarded by mutex_ (recorded when a worker takes a connection)
  mutable std::mutex service_mutex_;  // guards service_time_: workers record after each response
  samples service_time_;
  std::mutex stop_mutex_;  // serialises stop()
  bool stopped_ = false;

  // Counters: relaxed, each is a statistic on its own.
  std::atomic<std::size_t> busy_{0};
  std::atomic<std::uint64_t> accepted_{0}, rejected_{0}, requests_{0}, bad_requests_{0};
  std::atomic<std::uint64_t> s2xx_{0}, s4xx_{0}, s5xx_{0}, handler_exceptions_{0};
};

/// aggregator_front_* families, labelled server="<name>".
void add_metrics(spindle::prometheus_exposition& e, const front_statistics& s, const std::string& name);

}  // namespace aggregator
