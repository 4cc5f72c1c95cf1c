#pragma once
/// \file
/// http::server: HTTP/1.1 on a tcp_listener, one task per connection.

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>

#include "spindle/event.hpp"
#include "spindle/http/connection.hpp"
#include "spindle/http/message.hpp"
#include "spindle/join_handle.hpp"
#include "spindle/net/tcp.hpp"
#include "spindle/net/tls.hpp"
#include "spindle/task.hpp"

namespace spindle::http {

/// A request handler: runs as part of its connection's task.
using handler = std::function<task<response>(request&)>;

struct server_options {
  std::size_t max_header_bytes = 16 * 1024;           ///< larger: 431, connection closed
  std::uint64_t max_body_bytes = 8ull * 1024 * 1024;  ///< larger: 413, connection closed
  /// From a request's first byte to the end of its headers (slowloris):
  /// slower clients are disconnected.
  duration header_timeout = std::chrono::seconds(10);
  /// Reading a request body.
  duration body_timeout = std::chrono::seconds(30);
  /// Waiting for the next request on a kept-alive connection.
  duration keepalive_timeout = std::chrono::seconds(30);
  /// Connections beyond this are closed as soon as they are accepted.
  std::size_t max_connections = 10'000;
  /// stop(): how long in-flight requests may take before they are cancelled.
  duration shutdown_grace = std::chrono::seconds(5);
  /// TLS (server side); empty: plain HTTP.
  std::optional<net::tls_context> tls{};
};

struct server_statistics {
  std::uint64_t connections_accepted = 0;
  std::uint64_t connections_open = 0;
  std::uint64_t connections_rejected = 0;  ///< over max_connections
  std::uint64_t requests = 0;
  std::uint64_t requests_in_flight = 0;
  std::uint64_t bad_requests = 0;      ///< malformed, too large, too slow
  std::uint64_t handler_failures = 0;  ///< the handler threw: answered 500
};

/// An HTTP/1.1 server: keep-alive, pipelining-safe (requests on a
/// connection are answered in order), request size limits, header and
/// idle timeouts, graceful stop.
///
///     http::server srv(handle);
///     auto running = loop.spawn(srv.serve(net::tcp_listener::bind(addr)), "http");
///     ...
///     srv.stop();          // stop accepting, finish in-flight requests
///     co_await running;    // every connection has ended
///
/// **Thread safety:** use on the thread of the loop it serves on (stop()
/// from elsewhere through a portal or call_soon_threadsafe).
/// **Cancellation:** cancelling serve() closes every connection at once;
/// stop() is the graceful way.
class server {
 public:
  explicit server(handler h, server_options opts = {});
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// Accepts and serves connections until stop(); returns when every
  /// connection has ended.
  task<void> serve(net::tcp_listener listener);
  /// Graceful stop: no new connections; idle connections close now;
  /// requests in flight finish (their responses carry Connection: close)
  /// within shutdown_grace, after which they are cancelled.
  void stop() noexcept;
  [[nodiscard]] bool stopping() const noexcept { return stopping_; }
  [[nodiscard]] server_statistics statistics() const noexcept { return stats_; }

 private:
  struct conn;
  task<void> accept_loop(net::tcp_listener& listener);
  task<void> serve_connection(std::shared_ptr<conn> c, net::tcp_stream raw);
  task<void> grace_timer();
  void connection_ended(conn* c) noexcept;

  handler handler_;
  server_options opts_;
  bool stopping_ = false;
  server_statistics stats_;
  std::list<std::shared_ptr<conn>> conns_;
  std::optional<join_handle<void>> acceptor_;
  event all_closed_{"http server connections"};
  event stop_requested_{"http server stop"};
};

}  // namespace spindle::http
