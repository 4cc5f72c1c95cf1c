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

/// A request handler: runs as part of its connection's task. A handler that
/// throws, or returns a status outside 100..999, is answered 500.
/// http::router (router.hpp) builds one from routes.
using handler = std::function<task<response>(request&)>;

/// Every limit below is a defence against a hostile client; docs/net.md
/// lists each with its default and what the client gets when it hits it.
struct server_options {
  /// The whole request head: request line, fields, whitespace, line ends.
  /// Larger: 431, connection closed.
  std::size_t max_header_bytes = 16 * 1024;
  /// Header fields in a request head. More: 431, connection closed.
  std::size_t max_header_fields = 100;
  /// A request body, declared (Content-Length: 413 before any byte is
  /// read) or received (chunked: 413 once the count passes it).
  std::uint64_t max_body_bytes = 8ull * 1024 * 1024;
  /// Request bodies held in memory at once by the buffered form, across
  /// all connections (a body reserves its Content-Length when it starts,
  /// chunked bodies as they arrive). Over it: 503 with Retry-After,
  /// connection closed. Streamed bodies (stream_body) do not count.
  std::uint64_t max_buffered_body_total = 32ull * 1024 * 1024;
  /// A request head must be complete this long after its first byte, and a
  /// new connection's first head this long after accept (a silent
  /// connection is closed then; a slow head gets 408).
  duration header_timeout = std::chrono::seconds(10);
  /// Reading a request body: the longest wait for its next bytes (408).
  duration body_timeout = std::chrono::seconds(30);
  /// Writing a response: the longest wait for the client to take the next
  /// piece (then the connection is closed).
  duration send_timeout = std::chrono::seconds(30);
  /// Waiting for the next request on a kept-alive connection.
  duration keepalive_timeout = std::chrono::seconds(30);
  /// Open connections. A connection accepted beyond this closes the
  /// longest-idle connection (idle: waiting for a request, or new and
  /// silent) to make room, or is answered 503 at once when none is idle.
  std::size_t max_connections = 10'000;
  /// Requests for which this returns true (given the head) reach the
  /// handler before their body is read: it reads request::body_stream
  /// (never null for them, even without a body; request::body stays
  /// empty). Default: every body is read into request::body first.
  std::function<bool(const request&)> stream_body{};
  /// stop(): how long in-flight requests may take before they are cancelled.
  duration shutdown_grace = std::chrono::seconds(5);
  /// TLS (server side); empty: plain HTTP.
  std::optional<net::tls_context> tls{};
};

struct server_statistics {
  std::uint64_t connections_accepted = 0;
  std::uint64_t connections_open = 0;
  std::uint64_t connections_rejected = 0;  ///< closed at once: stopping, or full with none idle (503)
  std::uint64_t connections_evicted = 0;   ///< idle connections closed to admit new ones
  std::uint64_t fd_exhaustion = 0;         ///< accept found no descriptor (EMFILE, ENFILE, ...)
  std::uint64_t connections_shed = 0;      ///< answered 503 through the spare descriptor
  std::uint64_t requests = 0;
  std::uint64_t requests_in_flight = 0;
  std::uint64_t bad_requests = 0;      ///< answered 4xx/5xx by the server itself (all kinds below too)
  std::uint64_t heads_rejected = 0;    ///< 431: head over max_header_bytes or max_header_fields
  std::uint64_t bodies_rejected = 0;   ///< 413: body over max_body_bytes
  std::uint64_t bodies_deferred = 0;   ///< 503: over max_buffered_body_total
  std::uint64_t header_timeouts = 0;   ///< heads too slow (408) and silent new connections closed
  std::uint64_t body_timeouts = 0;     ///< bodies too slow (408)
  std::uint64_t send_timeouts = 0;     ///< clients that stopped taking a response
  std::uint64_t handler_failures = 0;  ///< the handler threw: answered 500
};

/// A request body as it arrives (request::body_stream).
///
/// **Thread safety:** the handler's task only.
/// **Cancellation:** read() is a cancellation point.
class body_reader {
 public:
  /// The next piece of the body (valid until the next call), empty at its
  /// end. The first read of a request that expects 100-continue sends
  /// "100 Continue". Throws timeout_error (no bytes for body_timeout),
  /// protocol_error (malformed, or over max_body_bytes: the server answers
  /// 413), connection_error.
  task<std::string_view> read();
  /// The rest of the body, at most max_body_bytes (in memory: meant for
  /// bodies known to be small).
  task<std::string> read_all();
  /// The whole body was read.
  [[nodiscard]] bool done() const noexcept;
  /// Body bytes received so far.
  [[nodiscard]] std::uint64_t received() const noexcept;

 private:
  friend class server;
  struct source;
  explicit body_reader(source& s) noexcept : src_(&s) {}
  source* src_;
};

/// Writes a response body as it is produced (response::body_producer).
///
/// **Thread safety:** the handler's task only.
/// **Cancellation:** write() is a cancellation point.
class body_writer {
 public:
  /// Sends `data` (as one chunk when chunked); waits while the client is
  /// slow (send_timeout). Throws connection_error or timeout_error (let it
  /// propagate: the connection is closed), usage_error past a declared
  /// Content-Length.
  task<void> write(std::string_view data);
  /// Body bytes written so far.
  [[nodiscard]] std::uint64_t written() const noexcept;

 private:
  friend class server;
  struct sink;
  explicit body_writer(sink& s) noexcept : sink_(&s) {}
  sink* sink_;
};

/// An HTTP/1.1 server: keep-alive, pipelining-safe (requests on a
/// connection are answered in order), RFC 9112 request rules (Host,
/// absolute-form, versions, 100-continue), request size limits, timeouts
/// by phase, admission under pressure, streaming bodies both ways,
/// graceful stop.
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
  friend class body_reader;
  friend class body_writer;
  struct conn;
  struct exchange;
  task<void> accept_loop(net::tcp_listener& listener);
  task<void> serve_connection(std::shared_ptr<conn> c, net::tcp_stream raw);
  task<bool> serve_request(exchange& x);
  void connection_ended(conn* c) noexcept;
  void set_idle(conn& c, bool idle) noexcept;
  bool evict_idle() noexcept;

  handler handler_;
  server_options opts_;
  bool stopping_ = false;
  server_statistics stats_;
  std::list<std::shared_ptr<conn>> conns_;
  conn* idle_head_ = nullptr;  // idle connections, longest idle first
  conn* idle_tail_ = nullptr;
  std::size_t evicting_ = 0;          // evicted, not yet ended
  std::uint64_t buffered_bytes_ = 0;  // max_buffered_body_total's count
  std::optional<join_handle<void>> acceptor_;
  event all_closed_{"http server connections"};
  event stop_requested_{"http server stop"};
};

}  // namespace spindle::http
