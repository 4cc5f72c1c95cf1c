// fault_server: see the header for the paths, the design and the shutdown steps.

#include "support/fault_server.hpp"

#include <zlib.h>

#include <charconv>
#include <cstdio>
#include <exception>
#include <span>
#include <stdexcept>
#include <utility>

#include "spindle/cancel_scope.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/http/errors.hpp"
#include "spindle/http/parser.hpp"
#include "spindle/sleep.hpp"

namespace spindle::test {

using namespace std::chrono_literals;

namespace {

// How a response leaves the connection.
enum class after {
  keep,   // ready for the next request
  close,  // FIN (graceful close)
  abort,  // already reset, or the peer is gone: close now
};

constexpr std::size_t read_chunk = 16 * 1024;
constexpr std::size_t max_buffered = 1 << 20;  // unparsed input kept per connection
constexpr std::size_t kept_body = 64 * 1024;   // of each request in received()
constexpr std::size_t kept_requests = 256;
constexpr auto streaming_limit = 30s;  // /trickle and /slow-headers
constexpr auto linger = 1s;            // reading after our FIN, before closing
constexpr long long max_delay_ms = 60'000;

time_point now() { return event_loop::current()->now(); }

// ---- request targets ----------------------------------------------------------

std::optional<std::string_view> param(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    const std::size_t eq = pair.find('=');
    if (pair.substr(0, eq) == name) return eq == std::string_view::npos ? "" : pair.substr(eq + 1);
  }
  return std::nullopt;
}

std::optional<long long> int_param(std::string_view query, std::string_view name, long long lo,
                                   long long hi) {
  const auto text = param(query, name);
  if (!text) return std::nullopt;
  long long v = 0;
  const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), v);
  if (ec != std::errc() || end != text->data() + text->size() || v < lo || v > hi) return std::nullopt;
  return v;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    unsigned v = 0;
    if (s[i] == '%' && i + 2 < s.size() &&
        std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16).ptr == s.data() + i + 3) {
      out += static_cast<char>(v);
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// ---- responses ----------------------------------------------------------------

std::string status_line(int code) {
  const std::string_view reason = http::reason_phrase(code);
  return "HTTP/1.1 " + std::to_string(code) + " " + std::string(reason.empty() ? "Unknown" : reason) + "\r\n";
}

std::string connection_header(bool keep_alive) { return keep_alive ? "" : "Connection: close\r\n"; }

// A whole response with Content-Length (none, and no body, when `no_body`).
std::string simple(int code, std::string_view body, bool keep_alive, bool head, std::string_view extra = {},
                   bool no_body = false) {
  std::string r = status_line(code) + "Content-Type: text/plain\r\n";
  if (!no_body) r += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  r += extra;
  r += connection_header(keep_alive);
  r += "\r\n";
  if (!head && !no_body) r += body;
  return r;
}

std::string compress(std::string_view text, int window_bits) {
  z_stream z{};
  if (deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw std::runtime_error("fault_server: deflateInit2 failed");
  std::string out(deflateBound(&z, static_cast<uLong>(text.size())), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  z.avail_in = static_cast<uInt>(text.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int r = deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  if (r != Z_STREAM_END) throw std::runtime_error("fault_server: deflate failed");
  return out;
}

const std::string& gzip_body() {
  static const std::string body = compress(fault_server::gzip_text(), 31);  // 15 + 16: gzip wrapper
  return body;
}

const std::string& deflate_body() {
  static const std::string body = compress(fault_server::gzip_text(), 15);  // zlib wrapper
  return body;
}

const std::string& corrupt_gzip_body() {
  static const std::string body = [] {
    std::string b = gzip_body();
    // The first byte after the 10-byte gzip header starts the first deflate
    // block: 0xff makes it final with the reserved type 3 ("invalid block
    // type"), so inflating fails at once rather than at the CRC.
    b[10] = static_cast<char>(0xff);
    return b;
  }();
  return body;
}

std::string encoded(int code, const std::string& body, std::string_view encoding, bool keep_alive,
                    bool head) {
  return simple(code, body, keep_alive, head, "Content-Encoding: " + std::string(encoding) + "\r\n");
}

std::string chunked_response(bool keep_alive) {
  const std::string& text = fault_server::chunked_text();
  std::string r = status_line(200) + "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n" +
                  connection_header(keep_alive) + "\r\n";
  const std::size_t cuts[] = {0, 7, 27, 28, text.size()};
  for (std::size_t i = 0; i + 1 < std::size(cuts); ++i) {
    char size[16];
    const auto n = static_cast<std::size_t>(std::snprintf(size, sizeof size, "%zx", cuts[i + 1] - cuts[i]));
    r.append(size, n).append("\r\n").append(text, cuts[i], cuts[i + 1] - cuts[i]).append("\r\n");
  }
  return r + "0\r\n\r\n";
}

std::string echo_body(const http::request& req) {
  std::string b = req.method + " " + req.target + "\n";
  for (const auto& [name, value] : req.headers) b += name + ": " + value + "\n";
  return b + "\n" + req.body;
}

std::string huge_headers(long long kb, bool keep_alive, bool head) {
  std::string extra;
  for (long long i = 0; i < kb; ++i) {
    char name[32];
    const auto n = static_cast<std::size_t>(std::snprintf(name, sizeof name, "X-Filler-%05lld: ", i));
    extra.append(name, n).append(1024 - n - 2, 'f').append("\r\n");  // 1 KiB a line
  }
  return simple(200, "ok", keep_alive, head, extra);
}

struct reply {
  std::string bytes;
  after next = after::keep;
};

// A missing or out-of-range query parameter.
reply bad_param(std::string_view name, bool head) {
  return {simple(400, "bad or missing " + std::string(name), false, head), after::close};
}

// The responses written in one piece. A reply is named before any co_await
// that uses it (an aggregate holding a std::string: DEVELOPERS.md).
reply canned(const http::request& req, std::string_view path, std::string_view query, bool keep_alive) {
  const bool head = req.method == "HEAD";
  const after normal = keep_alive ? after::keep : after::close;
  if (path == "/ok") return {simple(200, "ok", keep_alive, head), normal};
  if (path == "/delay") {  // the wait is respond()'s
    if (!int_param(query, "ms", 0, max_delay_ms)) return bad_param("ms", head);
    return {simple(200, "ok", keep_alive, head), normal};
  }
  if (path == "/status") {
    const auto code = int_param(query, "code", 200, 599);
    if (!code) return bad_param("code", head);
    std::string extra;
    if (const auto retry = param(query, "retry_after"))
      extra = "Retry-After: " + std::string(*retry) + "\r\n";
    const bool no_body = *code == 204 || *code == 304;
    return {
        simple(static_cast<int>(*code), "status " + std::to_string(*code), keep_alive, head, extra, no_body),
        normal};
  }
  if (path == "/echo") return {simple(200, echo_body(req), keep_alive, head), normal};
  if (path == "/reset-headers") return {"HTTP/1.1 200 OK\r\nContent-Le", after::abort};
  if (path == "/reset-body")
    return {"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n0123456789",
            after::abort};
  if (path == "/wrong-length")
    return {"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n0123456789",
            after::close};
  if (path == "/too-long-body") {
    return {"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n" +
                connection_header(keep_alive) + "\r\nhello" + std::string(fault_server::too_long_junk),
            normal};
  }
  if (path == "/malformed-status") return {"HTTP/1.1 2x0 OK\r\n\r\n", after::close};
  if (path == "/huge-headers") {
    const auto kb = int_param(query, "kb", 0, 16 * 1024);
    if (!kb) return bad_param("kb", head);
    return {huge_headers(*kb, keep_alive, head), normal};
  }
  if (path == "/close-delimited")
    return {"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + fault_server::close_delimited_text(),
            after::close};
  if (path == "/bad-chunked") {
    return {
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        after::close};
  }
  if (path == "/chunked") return {chunked_response(keep_alive), normal};
  if (path == "/gzip") return {encoded(200, gzip_body(), "gzip", keep_alive, head), normal};
  if (path == "/deflate") return {encoded(200, deflate_body(), "deflate", keep_alive, head), normal};
  if (path == "/gzip-corrupt") return {encoded(200, corrupt_gzip_body(), "gzip", keep_alive, head), normal};
  if (path == "/redirect") {
    const auto n = int_param(query, "n", 0, 1'000'000);
    if (!n) return bad_param("n", head);
    if (*n == 0) return {simple(200, "arrived", keep_alive, head), normal};
    const std::string location = "Location: /redirect?n=" + std::to_string(*n - 1) + "\r\n";
    return {simple(302, "redirect", keep_alive, head, location), normal};
  }
  if (path == "/redirect-loop")
    return {simple(302, "redirect", keep_alive, head, "Location: /redirect-loop\r\n"), normal};
  if (path == "/redirect-abs") {
    const auto to = param(query, "to");
    if (!to || to->empty()) return bad_param("to", head);
    return {simple(302, "redirect", keep_alive, head, "Location: " + percent_decode(*to) + "\r\n"), normal};
  }
  if (path == "/close-after") return {simple(200, "ok", false, head), after::close};
  return {simple(404, "not found", keep_alive, head), normal};
}

}  // namespace

// ---- the connection -------------------------------------------------------------

namespace detail {

/// A server connection, plain or TLS after start_tls(). Loop thread only.
class fault_wire {
 public:
  explicit fault_wire(net::tcp_stream s) : tcp_(std::move(s)) {}

  task<void> start_tls(net::tls_context ctx) {
    tls_.emplace(co_await net::tls_stream::accept(std::move(tcp_), std::move(ctx)));
  }
  task<std::size_t> read_some(std::span<char> b) { return tls_ ? tls_->read_some(b) : tcp_.read_some(b); }
  /// `data` must live until the returned task ends.
  task<void> write(std::string_view data) { return tls_ ? tls_->write_all(data) : tcp_.write_all(data); }
  net::tcp_stream& transport() noexcept { return tls_ ? tls_->transport() : tcp_; }
  /// RST: SO_LINGER 0, then close (also under TLS: no close_notify).
  void reset() noexcept {
    transport().reset();
    close();
  }
  void close() noexcept {
    if (tls_) tls_->close();
    tcp_.close();
  }

  /// Waits until `until`, reading meanwhile so that a peer that closes is
  /// noticed at once: false when it did (or flooded us). What it sends is
  /// appended to `in` (the next request's bytes).
  task<bool> idle_until(time_point until, std::string& in) {
    char buf[4096];
    for (int i = 0; i < 64; ++i) {  // bounded: a chatty peer is let through 64 times per wait
      const std::optional<std::size_t> n = co_await move_on_at(until, read_some(std::span<char>(buf)));
      if (!n) co_return true;
      if (*n == 0 || in.size() + *n > max_buffered) co_return false;
      in.append(buf, *n);
    }
    co_await sleep_until(until);
    co_return true;
  }

  /// FIN (after close_notify under TLS), then reads until the peer's FIN
  /// for at most `linger`, then closes: closing with unread bytes in the
  /// socket would send an RST instead of the FIN.
  task<void> finish() {
    try {
      if (tls_) co_await with_timeout(linger, tls_->shutdown());
      transport().shutdown_write();
      const time_point deadline = now() + linger;
      char buf[4096];
      for (int i = 0; i < 256; ++i) {
        const std::optional<std::size_t> n = co_await move_on_at(deadline, read_some(std::span<char>(buf)));
        if (!n || *n == 0) break;
      }
    } catch (const cancelled_error&) {
      throw;
    } catch (const std::exception&) {
      // The peer reset or went away first: nothing left to be graceful about.
    }
    close();
  }

 private:
  net::tcp_stream tcp_;
  std::optional<net::tls_stream> tls_;
};

/// Counts a connection as open from accept until its task's frame is gone
/// (the socket, a local of that task, is closed by then).
struct fault_conn_token {
  fault_server* server;
  std::size_t index;
  fault_conn_token(fault_server* s, std::size_t i) noexcept : server(s), index(i) {}
  fault_conn_token(fault_conn_token&& o) noexcept
      : server(std::exchange(o.server, nullptr)), index(o.index) {}
  fault_conn_token& operator=(fault_conn_token&&) = delete;
  ~fault_conn_token() {
    if (server != nullptr) server->connection_ended();
  }
};

}  // namespace detail

namespace {

// (Out here, not a static inside the coroutine: made by the constructor.)
const std::string& big_piece() {
  static const std::string piece(64 * 1024, 'x');
  return piece;
}

using detail::fault_wire;

// Reads one request into `p`: false when the connection was idle past
// `idle_deadline` or closed before a request began, or a request did not
// complete within request_timeout. Throws protocol_error for a bad request.
// Writes `r` (RST afterwards when it says abort) and returns what follows.
// By reference: a reply temporary in the caller's co_await would meet the
// g++ 12 pitfall of DEVELOPERS.md.
task<after> write_reply(fault_wire& w, const reply& r) {
  co_await w.write(r.bytes);
  if (r.next == after::abort) w.reset();
  co_return r.next;
}

task<bool> read_request(fault_wire& w, std::string& in, http::message_parser& p, time_point idle_deadline) {
  std::optional<time_point> request_deadline;
  bool continued = false;
  char buf[read_chunk];
  for (;;) {  // bounded by the deadlines, and in bytes by the parser's limits
    if (!in.empty()) {
      in.erase(0, p.feed(in));
      if (p.complete()) co_return true;
    }
    if (!p.idle() && !request_deadline) request_deadline = now() + fault_server::request_timeout;
    if (p.headers_complete() && !continued &&
        p.request_message().headers.has_token("Expect", "100-continue")) {
      continued = true;
      co_await w.write("HTTP/1.1 100 Continue\r\n\r\n");
    }
    const std::optional<std::size_t> n =
        co_await move_on_at(request_deadline.value_or(idle_deadline), w.read_some(std::span<char>(buf)));
    if (!n) co_return false;
    if (*n == 0) {
      if (p.idle()) co_return false;
      p.finish();  // throws: the request was cut short
      co_return p.complete();
    }
    in.append(buf, *n);
  }
}

task<after> trickle(fault_wire& w, std::string_view query, std::string& in, bool keep_alive) {
  const auto interval = int_param(query, "interval_ms", 1, 10'000);
  if (!interval) {
    const reply bad = bad_param("interval_ms", false);
    co_return co_await write_reply(w, bad);
  }
  const std::string head = status_line(200) + "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n" +
                           connection_header(keep_alive) + "\r\n";
  co_await w.write(head);
  const time_point end = now() + streaming_limit;
  for (long long i = 0; i < 30'000 && now() < end; ++i) {  // 30 s at 1 ms at most
    co_await w.write("5\r\ntick\n\r\n");
    if (!co_await w.idle_until(now() + std::chrono::milliseconds(*interval), in)) co_return after::abort;
  }
  co_await w.write("0\r\n\r\n");
  co_return keep_alive ? after::keep : after::close;
}

task<after> slow_headers(fault_wire& w, std::string_view query, std::string& in, bool keep_alive) {
  const auto interval = int_param(query, "interval_ms", 1, 10'000);
  if (!interval) {
    const reply bad = bad_param("interval_ms", false);
    co_return co_await write_reply(w, bad);
  }
  co_await w.write("HTTP/1.1 200 OK\r\n");
  const time_point end = now() + streaming_limit;
  for (long long i = 0; i < 30'000 && now() < end; ++i) {
    if (!co_await w.idle_until(now() + std::chrono::milliseconds(*interval), in)) co_return after::abort;
    const std::string line = "X-Slow-" + std::to_string(i) + ": " + std::to_string(i) + "\r\n";
    co_await w.write(line);
  }
  const std::string rest = "Content-Length: 2\r\n" + connection_header(keep_alive) + "\r\nok";
  co_await w.write(rest);
  co_return keep_alive ? after::keep : after::close;
}

task<after> big(fault_wire& w, std::string_view query, bool keep_alive, bool head) {
  const auto bytes = int_param(query, "bytes", 0, 1ll << 30);
  if (!bytes) {
    const reply bad = bad_param("bytes", head);
    co_return co_await write_reply(w, bad);
  }
  const std::string headers =
      status_line(200) +
      "Content-Type: application/octet-stream\r\nContent-Length: " + std::to_string(*bytes) + "\r\n" +
      connection_header(keep_alive) + "\r\n";
  co_await w.write(headers);
  const std::string& piece = big_piece();
  for (long long left = head ? 0 : *bytes; left > 0;) {  // at most 16 384 pieces
    const auto n = static_cast<std::size_t>(std::min<long long>(left, static_cast<long long>(piece.size())));
    co_await w.write(std::string_view(piece).substr(0, n));
    left -= static_cast<long long>(n);
  }
  co_return keep_alive ? after::keep : after::close;
}

task<after> respond(fault_wire& w, const http::request& req, bool keep_alive, std::string& in) {
  const std::string_view target = req.target;
  const std::size_t q = target.find('?');
  const std::string_view path = target.substr(0, q);
  const std::string_view query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
  if (path == "/trickle") co_return co_await trickle(w, query, in, keep_alive);
  if (path == "/slow-headers") co_return co_await slow_headers(w, query, in, keep_alive);
  if (path == "/big") co_return co_await big(w, query, keep_alive, req.method == "HEAD");
  if (path == "/delay") {
    if (const auto ms = int_param(query, "ms", 0, max_delay_ms))
      co_await sleep_for(std::chrono::milliseconds(*ms));
  }
  const reply r = canned(req, path, query, keep_alive);
  co_return co_await write_reply(w, r);
}

}  // namespace

// ---- fault_server ---------------------------------------------------------------

const std::string& fault_server::gzip_text() {
  static const std::string text = [] {
    std::string s;
    for (int i = 0; s.size() < 10 * 1024; ++i)
      s += "line " + std::to_string(i) + ": the quick brown fox jumps over the lazy dog\n";
    return s;
  }();
  return text;
}

const std::string& fault_server::chunked_text() {
  static const std::string text = "Chunked transfer coding: this body arrives in four chunks.\n";
  return text;
}

const std::string& fault_server::close_delimited_text() {
  static const std::string text = "This body has neither a length nor chunks: it ends with the connection.\n";
  return text;
}

fault_server::fault_server(fault_server_options opts) : opts_(opts) {
  // Built here rather than on the loop, once per process. Function-local
  // statics finished during this constructor are destroyed after this
  // object: a server that is itself a static (a test's shared server)
  // never serves a string destroyed under it at exit (TSan saw that).
  (void)gzip_body();
  (void)deflate_body();
  (void)corrupt_gzip_body();
  (void)chunked_text();
  (void)close_delimited_text();
  (void)big_piece();
  if (opts_.tls) {
    using kind = fault_server_options::cert_kind;
    switch (opts_.cert) {
      case kind::good: cert_.emplace(self_signed({"localhost", "127.0.0.1"})); break;
      case kind::wrong_name: cert_.emplace(self_signed({"wrong-name.invalid"})); break;
      case kind::expired: cert_.emplace(self_signed({"localhost", "127.0.0.1"}, -1)); break;
    }
    ca_file_ = cert_->cert_file();
    net::tls_server_options server_opts;
    server_opts.certificate_pem = cert_->cert_pem;
    server_opts.key_pem = cert_->key_pem;
    tls_ctx_.emplace(net::tls_context::server(server_opts));
  }
  background_loop_options loop_opts;
  loop_opts.loop.name = "fault-server";
  loop_opts.loop.shutdown_grace = 2s;
  bg_.emplace(std::move(loop_opts));
  try {
    bg_->portal().call_sync([this] {
      plain_listener_ = net::tcp_listener::bind(net::socket_address::loopback_v4(0));
      port_ = plain_listener_->local_address().port();
      if (opts_.tls) {
        tls_listener_ = net::tcp_listener::bind(net::socket_address::loopback_v4(0));
        tls_port_ = tls_listener_->local_address().port();
      }
    });
    serving_ = bg_->portal().submit(
        [this] {
          net::tcp_listener plain = std::move(*plain_listener_);
          std::optional<net::tcp_listener> secure = std::move(tls_listener_);
          plain_listener_.reset();
          tls_listener_.reset();
          return serve(std::move(plain), std::move(secure));
        },
        "fault_server");
  } catch (...) {
    shutdown();
    throw;
  }
}

fault_server::~fault_server() { shutdown(); }

void fault_server::shutdown() noexcept {
  if (!bg_) return;
  if (serving_.valid()) {
    serving_.cancel();
    if (serving_.wait_for(stop_timeout) == std::future_status::ready) {
      try {
        serving_.get();
      } catch (const cancelled_error&) {
        // The expected end.
      } catch (const std::exception& e) {
        std::fprintf(stderr, "fault_server: the server task failed: %s\n", e.what());
      }
    } else {
      std::fprintf(stderr, "fault_server: the server task did not end within %lld s of its cancellation\n",
                   static_cast<long long>(stop_timeout.count()));
    }
  }
  try {
    // Listeners the server task never took (a failed constructor) close on their loop.
    bg_->portal().call_sync([this] {
      plain_listener_.reset();
      tls_listener_.reset();
    });
  } catch (...) {
    // The loop is closed already: nothing of ours is left on it.
  }
  try {
    bg_->stop();  // cancels what is left (2 s grace) and joins the thread
  } catch (...) {
  }
  bg_.reset();
}

std::string fault_server::base_url() const { return "http://127.0.0.1:" + std::to_string(port_); }

std::string fault_server::tls_base_url() const { return "https://localhost:" + std::to_string(tls_port_); }

std::uint64_t fault_server::connections_accepted() const noexcept {
  return accepted_.load(std::memory_order_relaxed);  // a counter: orders nothing else
}

std::uint64_t fault_server::requests_served() const noexcept {
  return served_.load(std::memory_order_relaxed);  // a counter: orders nothing else
}

std::size_t fault_server::open_connections() const {
  std::lock_guard lock(mutex_);  // open_ is written on the loop thread
  return open_;
}

std::vector<std::uint64_t> fault_server::requests_per_connection() const {
  std::lock_guard lock(mutex_);  // written on the loop thread
  return per_connection_;
}

std::vector<http::request> fault_server::received() const {
  std::lock_guard lock(mutex_);  // written on the loop thread
  return {received_.begin(), received_.end()};
}

bool fault_server::wait_open_connections_at_most(std::size_t n, std::chrono::milliseconds limit) {
  std::unique_lock lock(mutex_);  // connection_ended() changes open_ under it, then notifies
  return open_changed_.wait_for(lock, limit, [&] { return open_ <= n; });
}

void fault_server::connection_ended() noexcept {
  {
    std::lock_guard lock(mutex_);  // the test thread reads open_
    --open_;
  }
  open_changed_.notify_all();
}

void fault_server::record(std::size_t index, const http::request& req) {
  http::request copy;
  copy.method = req.method;
  copy.target = req.target;
  copy.headers = req.headers;
  copy.body = req.body.substr(0, kept_body);
  copy.version_minor = req.version_minor;
  served_.fetch_add(1, std::memory_order_relaxed);  // a counter: orders nothing else
  std::lock_guard lock(mutex_);                     // the test thread reads these
  ++per_connection_.at(index);
  received_.push_back(std::move(copy));
  if (received_.size() > kept_requests) received_.pop_front();
}

task<void> fault_server::serve(net::tcp_listener plain, std::optional<net::tcp_listener> secure) {
  // Cancelling this task cancels the group: the accept loops and every
  // connection, each closing its socket as it ends.
  co_await with_task_group([&](task_group& g) -> task<void> {
    g.spawn(accept_loop(std::move(plain), false, g), "fault_server.accept");
    if (secure) g.spawn(accept_loop(std::move(*secure), true, g), "fault_server.accept_tls");
    co_return;
  });
}

task<void> fault_server::accept_loop(net::tcp_listener listener, bool tls, task_group& group) {
  for (;;) {  // until the server task is cancelled; connections are capped below
    net::tcp_stream s = co_await listener.accept();
    accepted_.fetch_add(1, std::memory_order_relaxed);  // a counter: orders nothing else
    std::optional<detail::fault_conn_token> token;
    {
      std::lock_guard lock(mutex_);  // the test thread reads these
      per_connection_.push_back(0);
      if (open_ < max_connections) {
        ++open_;
        token.emplace(this, per_connection_.size() - 1);
      }
    }
    if (!token) {
      s.close();
      continue;
    }
    group.spawn(serve_connection(std::move(*token), std::move(s), tls), "fault_server.connection");
  }
}

task<void> fault_server::serve_connection(detail::fault_conn_token token, net::tcp_stream raw, bool tls) {
  fault_wire w(std::move(raw));
  try {
    if (tls) co_await with_timeout(10s, w.start_tls(*tls_ctx_));
    co_await serve_requests(w, token.index);
  } catch (const cancelled_error&) {
    throw;
  } catch (const std::exception&) {
    // The handshake failed (a client rejecting a bad certificate) or the
    // peer reset or went away: the connection is over.
  }
}

task<void> fault_server::serve_requests(fault_wire& w, std::size_t index) {
  http::message_parser parser(http::message_parser::kind::request);
  std::string in;  // received, not yet parsed
  for (std::uint64_t n = 0; n < max_requests_per_connection; ++n) {
    bool got = false;
    bool bad = false;
    try {
      got = co_await read_request(w, in, parser, now() + opts_.keep_alive_timeout);
    } catch (const http::protocol_error&) {
      bad = true;
    }
    if (bad) {
      const std::string r = simple(400, "bad request", false, false);
      co_await w.write(r);
      break;
    }
    if (!got) break;  // idle, closed by the peer, or too slow
    const http::request req = std::move(parser.request_message());
    const bool keep_alive = parser.keep_alive();
    parser.reset();
    record(index, req);
    const after next = co_await respond(w, req, keep_alive, in);
    if (next == after::abort) co_return;
    if (next == after::close) break;
  }
  co_await w.finish();
}

}  // namespace spindle::test
