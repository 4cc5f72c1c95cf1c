#pragma once
/// \file
/// http::client: HTTP/1.1 requests over one keep-alive connection pool
/// shared fairly by every origin, with typed errors, timeouts as deadlines,
/// redirects (opt-in) that never carry credentials to another origin,
/// incremental gzip/deflate/br/zstd decoding, streaming bodies and a retry
/// preset. The rules are in docs/net.md.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "spindle/error.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/http/errors.hpp"
#include "spindle/http/message.hpp"
#include "spindle/http/url.hpp"
#include "spindle/net/dns.hpp"
#include "spindle/retry.hpp"
#include "spindle/task.hpp"

namespace spindle::http {

/// A response whose status the caller asked to treat as a failure
/// (request_options::throw_on_status). 429 and 503 carry Retry-After.
class http_status_error : public error {
 public:
  http_status_error(int status, std::string message, std::optional<duration> retry_after)
      : error(std::move(message)), status_(status), retry_after_(retry_after) {}
  [[nodiscard]] error_kind kind_id() const noexcept override { return error_kind::http_status; }
  [[nodiscard]] int status() const noexcept { return status_; }
  [[nodiscard]] std::optional<duration> retry_after() const noexcept { return retry_after_; }

 private:
  int status_;
  std::optional<duration> retry_after_;
};

/// Retry-After as a delay: delta-seconds or an HTTP date (nullopt if absent or unreadable).
[[nodiscard]] std::optional<duration> parse_retry_after(std::string_view value);

/// Receives a response's body piece by piece (request_options::sink), so a
/// body never has to sit whole in memory. Only the final response's body
/// arrives here (not those of redirects followed, nor of 1xx responses),
/// decoded when client_options::decompress applies. Throwing from either
/// call fails the request with that exception (the connection is closed).
class body_sink {
 public:
  virtual ~body_sink() = default;
  /// The final response's status and headers, before any body byte.
  virtual task<void> start(const response& head);
  /// The next piece of the body (valid only during the call). The client
  /// waits for it before it reads on: a slow sink slows the download down.
  virtual task<void> write(std::string_view piece) = 0;
};

struct client_options {
  /// Connections to one origin (scheme, host, port) at most.
  std::size_t max_connections_per_origin = 8;
  /// Connections at most, all origins together. When it is reached, an
  /// origin below its fair share (this limit divided by the origins with
  /// requests in flight or waiting) may close another origin's least
  /// recently used idle connection to open one; an origin at its share
  /// waits for one of its own connections instead (docs/net.md).
  std::size_t max_connections_total = 256;
  /// Idle pooled connections older than this are closed instead of reused.
  duration idle_timeout = std::chrono::seconds(30);
  duration connect_timeout = std::chrono::seconds(10);  ///< DNS + TCP + TLS
  duration header_timeout = std::chrono::seconds(30);   ///< request sent → headers received
  /// The whole request, redirects included; nullopt: none.
  std::optional<duration> request_timeout = std::chrono::seconds(60);
  std::uint64_t max_response_bytes = 64ull * 1024 * 1024;  ///< wire and decoded
  std::size_t max_header_bytes = 64 * 1024;
  /// 1xx responses (100 Continue, 103 Early Hints) skipped before the final
  /// one at most; more is a protocol_error.
  unsigned max_interim_responses = 16;
  /// Accept-Encoding: gzip, deflate, br, zstd, and decode as the body
  /// arrives (bounded pieces, within the request's deadline and size limit).
  bool decompress = true;
  int max_redirects = 0;  ///< opt-in
  /// Follow an https:// page's redirect to http:// (refused by default with
  /// a redirect_error). Credentials are dropped all the same.
  bool allow_insecure_redirects = false;
  bool verify_tls = true;
  std::string ca_file{};  ///< pinned CAs; empty: the system store
  std::string ca_path{};  ///< a directory of CAs (`openssl rehash`); with ca_file, both are trusted
  /// A client certificate and key (PEM), for servers that ask for one.
  std::string client_certificate_file{};
  std::string client_key_file{};  ///< empty: in client_certificate_file
  net::resolver_options dns{};
  std::string user_agent = "spindle/0.1";
};

/// Per-request overrides. Trivially copyable on purpose (see DEVELOPERS.md:
/// pass it as a temporary inside co_await safely).
struct request_options {
  std::optional<duration> timeout{};  ///< nullopt: client_options::request_timeout
  int max_redirects = -1;             ///< -1: client_options::max_redirects
  bool throw_on_status = false;       ///< non-2xx → http_status_error
  bool keep_body = true;              ///< false: count the body's bytes only
  /// zero: client_options::max_response_bytes; with a sink, zero: no limit.
  std::uint64_t max_response_bytes = 0;
  /// The body goes to this sink instead of response::body (which stays
  /// empty). Owned by the caller; it must outlive the send().
  body_sink* sink = nullptr;
};

struct client_statistics {
  std::uint64_t open = 0;      ///< connections open now
  std::uint64_t idle = 0;      ///< of those, idle in the pool
  std::uint64_t in_use = 0;    ///< of those, carrying a request
  std::uint64_t waiting = 0;   ///< requests queued for a connection (a limit is reached)
  std::uint64_t created = 0;   ///< connections made
  std::uint64_t reused = 0;    ///< requests sent on a pooled connection
  std::uint64_t failed = 0;    ///< connections closed because of an error
  std::uint64_t requests = 0;  ///< responses received
  /// Idle connections closed to make room for another origin's
  /// (max_connections_total reached).
  std::uint64_t evicted = 0;
};

/// **Thread safety:** use on the thread of the loop it was made on.
/// **Cancellation:** send() is a cancellation point; a cancelled request's
/// connection is closed, never reused.
class client {
 public:
  /// On the loop's thread (it owns a resolver on that loop).
  client();
  explicit client(client_options opts);
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  /// Sends a request and reads the whole response (or streams its body to
  /// request_options::sink). Throws invalid_url_error, dns_error,
  /// connect_error, tls_error, timeout_error, protocol_error,
  /// redirect_error, and http_status_error when asked to.
  ///
  /// Credentials: Authorization, Proxy-Authorization and Cookie fields, and
  /// the URL's userinfo (sent as Authorization: Basic unless the caller set
  /// Authorization), go only to the request's own origin; a redirect to
  /// another origin drops them, one back to it sends them again.
  task<response> send(std::string method, std::string url, headers h = {}, std::string body = {},
                      request_options opts = {});
  /// As send() with a URL parsed already (url::parse): a caller that
  /// validates its inputs first does not parse them twice.
  task<response> send(std::string method, url target, headers h = {}, std::string body = {},
                      request_options opts = {});
  task<response> get(std::string url, request_options opts = {}) {
    return send("GET", std::move(url), {}, {}, opts);
  }

  [[nodiscard]] client_statistics statistics() const noexcept;
  /// Closes every idle pooled connection.
  void close_idle() noexcept;

  struct impl;

 private:
  std::unique_ptr<impl> impl_;
};

/// A retry policy for HTTP: connect, DNS-less transport failures, timeouts,
/// 5xx and 429 (honouring Retry-After) are retried — only for idempotent
/// methods (GET, HEAD, PUT, DELETE, OPTIONS, TRACE) unless `allow_unsafe`.
[[nodiscard]] retry_policy http_retry_policy(std::string_view method, unsigned max_attempts = 3,
                                             duration base_delay = std::chrono::milliseconds(100),
                                             bool allow_unsafe = false);

}  // namespace spindle::http
