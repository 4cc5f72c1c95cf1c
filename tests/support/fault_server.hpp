#pragma once
// A loopback HTTP/1.1 server that misbehaves on request, for the HTTP
// client's tests: every fault a client must survive (resets mid-headers or
// mid-body, wrong lengths, junk, malformed status lines and chunks, slow
// and trickling peers, bad compression, redirect chains) is one path away.
//
// Design
// ------
// The server runs on a spindle::background_loop of its own (one thread).
// One task ("fault_server") owns everything on that loop: a task group
// whose children are the accept loop of each listener and one task per
// connection. Each connection task parses requests with
// http::message_parser (kind::request), keeps the connection alive between
// requests, and answers according to the request's path (see below).
// Nothing in a connection task blocks the loop: waiting is done with
// sleep_for or with a read bounded by move_on_at, so cancellation reaches
// every task at its next await.
//
// Invariants
//  - Listeners and streams live only on the loop thread: they are created
//    there (portal call_sync) and owned by the task that uses them.
//  - Every loop is bounded: connections (max_connections at once; more are
//    closed on accept), requests per connection (max_requests_per_connection),
//    and time (keep_alive_timeout when idle, request_timeout for one request,
//    30 s for /trickle and /slow-headers, 60 s for /delay, 1 s of lingering
//    on a graceful close).
//  - Counters are updated on the loop thread before the response's first
//    byte is written, so a client that has read a response sees them.
//
// Stopping (the destructor), in order:
//  1. Cancel the server task through its portal_future: the task group
//     cancels the accept loops (their listeners close as the tasks end) and
//     every connection task (its socket closes as the task ends).
//  2. Wait for the server task, bounded (stop_timeout).
//  3. Stop the background loop (shutdown_grace 2 s for anything left) and
//     join its thread.
// Afterwards no descriptor and no thread of the server remain.
//
// Paths (a bad or missing query parameter: 400, then FIN):
//   /ok                      200 "ok" with Content-Length
//   /delay?ms=N              waits N ms (at most 60 000), then 200 "ok"
//   /status?code=N[&retry_after=S]  status N (200..599), body "status N",
//                            Retry-After: S when given (204/304: no body)
//   /echo                    200, body: "METHOD TARGET\n", "name: value\n" per
//                            header as received, "\n", then the request body
//   /reset-headers           "HTTP/1.1 200 OK\r\nContent-Le", then RST
//   /reset-body              headers with Content-Length: 1000, 10 body
//                            bytes, then RST
//   /wrong-length            Content-Length: 100, 10 bytes, then FIN
//   /too-long-body           Content-Length: 5, body "hello" followed by the
//                            junk "JUNK!" (too_long_junk); the connection stays
//                            open for further requests
//   /malformed-status        "HTTP/1.1 2x0 OK\r\n\r\n", then FIN
//   /huge-headers?kb=N       200 with about N KiB (at most 16 MiB) of
//                            X-Filler-NNNNN headers of 1 KiB each, body "ok"
//   /trickle?interval_ms=M   chunked 200; one chunk "tick\n" every M ms
//                            (1..10 000) for 30 s, then the last chunk; stops
//                            at once when the peer closes (bytes it sends
//                            meanwhile are kept for the next request)
//   /slow-headers?interval_ms=M  the status line, then one header line every
//                            M ms (1..10 000) for 30 s, then Content-Length
//                            and "ok"; stops likewise when the peer closes
//   /close-delimited         "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" +
//                            close_delimited_text(), then FIN
//   /bad-chunked             chunked 200 whose first chunk size line is "zz",
//                            then FIN
//   /chunked                 chunked 200, body chunked_text() in 4 chunks
//   /gzip, /deflate          Content-Encoding gzip (zlib windowBits 31) or
//                            deflate (zlib format, windowBits 15) of
//                            gzip_text() (about 10 KiB), with Content-Length
//   /gzip-corrupt            Content-Encoding: gzip, a valid gzip header
//                            followed by an invalid deflate block
//   /redirect?n=K            302 Location: /redirect?n=K-1; n=0: 200 "arrived"
//   /redirect-loop           302 Location: /redirect-loop
//   /redirect-abs?to=URL     302 Location: URL (percent-decoded)
//   /big?bytes=N             200 with N bytes (at most 1 GiB) of 'x'
//   /close-after             200 "ok" with Connection: close, then FIN
//   anything else            404 "not found"
// A request with "Expect: 100-continue" gets "100 Continue" before its body
// is read; a HEAD request gets the headers of the ordinary responses without
// their body; a request that does not parse gets 400 and a FIN; a request
// with "Connection: close" (or HTTP/1.0 without keep-alive) is answered and
// the connection then closed with a FIN.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "spindle/background_loop.hpp"
#include "spindle/http/message.hpp"
#include "spindle/net/tcp.hpp"
#include "spindle/net/tls.hpp"
#include "spindle/portal.hpp"
#include "spindle/task.hpp"
#include "spindle/task_group.hpp"
#include "support/tls_certs.hpp"

namespace spindle::test {

namespace detail {
class fault_wire;         // a connection, plain or TLS (fault_server.cpp)
struct fault_conn_token;  // counts a connection as open for its lifetime
}  // namespace detail

struct fault_server_options {
  /// Also listen on a second port with TLS (tls_port(), tls_base_url()).
  bool tls = false;
  /// The certificate served on the TLS port, self-signed and pinnable
  /// through ca_file(): good (for "localhost" and "127.0.0.1"), wrong_name
  /// (for "wrong-name.invalid" only) or expired (for the right names, but
  /// expired yesterday).
  enum class cert_kind { good, wrong_name, expired };
  cert_kind cert = cert_kind::good;
  /// An idle keep-alive connection is closed (FIN) after this long.
  std::chrono::milliseconds keep_alive_timeout{30'000};
};

/// The server; see the file comment for its paths and design.
///
/// **Thread safety:** every member is safe from any thread (the test's
/// thread typically), except the destructor, which must not run on the
/// server's own loop thread.
/// **Cancellation:** the destructor cancels every connection task (at its
/// next await) and returns within about stop_timeout + 2 s at worst.
class fault_server {
 public:
  /// The junk that follows the 5-byte body of /too-long-body.
  static constexpr std::string_view too_long_junk = "JUNK!";
  /// Connections served at once; more are accepted and closed at once.
  static constexpr std::size_t max_connections = 256;
  static constexpr std::uint64_t max_requests_per_connection = 10'000;
  /// How long one request may take to arrive once its first byte has.
  static constexpr std::chrono::seconds request_timeout{60};
  /// How long the destructor waits for the server task after cancelling it.
  static constexpr std::chrono::seconds stop_timeout{5};

  /// Binds 127.0.0.1 on an ephemeral port (and a second one with TLS when
  /// asked) and starts serving. Throws what binding or TLS setup throws.
  explicit fault_server(fault_server_options opts = {});
  /// Stops (see the file comment); never throws.
  ~fault_server();
  fault_server(const fault_server&) = delete;
  fault_server& operator=(const fault_server&) = delete;

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  /// 0 without options::tls.
  [[nodiscard]] std::uint16_t tls_port() const noexcept { return tls_port_; }
  /// "http://127.0.0.1:PORT".
  [[nodiscard]] std::string base_url() const;
  /// "https://localhost:TLS_PORT" (the good certificate names localhost).
  [[nodiscard]] std::string tls_base_url() const;
  /// A PEM file holding the TLS port's certificate, for
  /// tls_client_options::ca_file (deleted with the server); empty without TLS.
  [[nodiscard]] const std::string& ca_file() const noexcept { return ca_file_; }

  /// Connections accepted on both ports (including those closed at once
  /// because max_connections were open).
  [[nodiscard]] std::uint64_t connections_accepted() const noexcept;
  /// Requests parsed and answered (the counter moves before the first byte
  /// of the response is written).
  [[nodiscard]] std::uint64_t requests_served() const noexcept;
  /// Connections whose task has not ended yet.
  [[nodiscard]] std::size_t open_connections() const;
  /// For each connection in the order accepted, the requests it carried.
  [[nodiscard]] std::vector<std::uint64_t> requests_per_connection() const;
  /// The last requests received (at most 256, oldest first), bodies cut to
  /// 64 KiB: for checking what a client sent.
  [[nodiscard]] std::vector<http::request> received() const;
  /// Waits until at most `n` connections are open, or `limit` passed;
  /// returns whether the condition holds.
  bool wait_open_connections_at_most(std::size_t n, std::chrono::milliseconds limit);

  /// The text behind /gzip and /deflate (about 10 KiB, compressible).
  static const std::string& gzip_text();
  /// The body of /chunked.
  static const std::string& chunked_text();
  /// The body of /close-delimited.
  static const std::string& close_delimited_text();

 private:
  friend struct detail::fault_conn_token;

  task<void> serve(net::tcp_listener plain, std::optional<net::tcp_listener> secure);
  task<void> accept_loop(net::tcp_listener listener, bool tls, task_group& group);
  task<void> serve_connection(detail::fault_conn_token token, net::tcp_stream raw, bool tls);
  task<void> serve_requests(detail::fault_wire& w, std::size_t index);
  void record(std::size_t index, const http::request& req);
  void connection_ended() noexcept;
  void shutdown() noexcept;

  fault_server_options opts_;
  std::optional<certificate> cert_;
  std::string ca_file_;
  std::optional<net::tls_context> tls_ctx_;
  std::uint16_t port_ = 0;
  std::uint16_t tls_port_ = 0;

  std::atomic<std::uint64_t> accepted_{0};
  std::atomic<std::uint64_t> served_{0};
  // The loop thread updates these; the test thread reads and waits on them.
  mutable std::mutex mutex_;
  std::condition_variable open_changed_;
  std::size_t open_ = 0;
  std::vector<std::uint64_t> per_connection_;
  std::deque<http::request> received_;

  std::optional<background_loop> bg_;
  // Loop thread only: bound in the constructor's call_sync, then moved into
  // the server task.
  std::optional<net::tcp_listener> plain_listener_;
  std::optional<net::tcp_listener> tls_listener_;
  portal_future<void> serving_;
};

}  // namespace spindle::test
