// http::client: the protocol and policy steps of a request, over the
// connection pool of client_pool.hpp and spindle::net.

#include "spindle/http/client.hpp"

#include <algorithm>
#include <charconv>
#include <ctime>
#include <limits>
#include <memory>

#include "client_pool.hpp"
#include "spindle/cancel_scope.hpp"
#include "spindle/http/connection.hpp"
#include "spindle/http/decoder.hpp"
#include "spindle/http/redirect.hpp"
#include "spindle/http/url.hpp"
#include "spindle/net/tcp.hpp"
#include "spindle/net/tls.hpp"
#include "spindle/sleep.hpp"

namespace spindle::http {

std::optional<duration> parse_retry_after(std::string_view v) {
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
  if (v.empty()) return std::nullopt;
  long seconds = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), seconds);
  if (ec == std::errc{} && end == v.data() + v.size()) {
    if (seconds < 0) return std::nullopt;
    return std::chrono::duration_cast<duration>(std::chrono::seconds(seconds));
  }
  // An HTTP date: "Sun, 06 Nov 1994 08:49:37 GMT".
  std::tm tm{};
  std::string text(v);
  if (::strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm) == nullptr) return std::nullopt;
  const std::time_t when = ::timegm(&tm);
  const std::time_t now = std::time(nullptr);
  return std::chrono::duration_cast<duration>(std::chrono::seconds(std::max<std::time_t>(0, when - now)));
}

namespace {

using detail::origin_pool;
using detail::pool_waiter;
using detail::pooled_connection;

bool idempotent(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "PUT" || method == "DELETE" ||
         method == "OPTIONS" || method == "TRACE";
}

std::string millis(duration d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms";
}

// Decoded bytes are delivered in pieces of this size, and the loop is
// yielded to after every `yield_every` of them: a decompression bomb runs in
// slices that the request's deadline can cut (issue #14: 35 s on the loop).
constexpr std::size_t piece_size = 64 * 1024;
constexpr std::uint64_t yield_every = 1024 * 1024;

constexpr std::string_view accept_encoding_field = "Accept-Encoding: gzip, deflate, br, zstd\r\n";

}  // namespace

task<void> body_sink::start(const response&) { co_return; }

namespace {
// We never send TE, so chunked is the only transfer coding a server may use
// (RFC 9112 §7.4; "identity" is tolerated): anything else would hand the
// caller a body still encoded in a way nobody asked for.
void check_transfer_coding(std::string_view field) {
  for (std::string_view rest = field; !rest.empty();) {
    const std::string_view coding = next_list_element(rest);
    if (coding.empty() || iequals(coding, "chunked") || iequals(coding, "identity")) continue;
    throw protocol_error("unsupported transfer coding '" + std::string(coding) +
                         "' (none was asked for; only chunked is allowed)");
  }
}
}  // namespace

struct client::impl {
  client_options opts;
  event_loop* loop;
  net::resolver dns;
  std::optional<net::tls_context> tls;  // made on first https request
  client_statistics stats;
  detail::connection_pool pool;

  explicit impl(client_options o)
      : opts(std::move(o)), loop(event_loop::current()), dns(*loop, opts.dns), pool(*loop, opts, stats) {}

  net::tls_context& tls_ctx() {
    if (!tls) {
      net::tls_client_options t;
      t.verify = opts.verify_tls;
      t.ca_file = opts.ca_file;
      t.ca_path = opts.ca_path;
      t.certificate_file = opts.client_certificate_file;
      t.key_file = opts.client_key_file;
      tls = net::tls_context::client(t);
    }
    return *tls;
  }

  task<std::unique_ptr<pooled_connection>> connect_new(const url& u) {
    const std::string host = u.host;
    net::tcp_stream tcp = co_await net::connect(dns, host, u.port, {.timeout = opts.connect_timeout});
    auto c = std::make_unique<pooled_connection>();
    if (u.is_https()) {
      net::tls_context ctx = tls_ctx();
      auto secured =
          co_await move_on_after(opts.connect_timeout, net::tls_stream::connect(std::move(tcp), ctx, host));
      if (!secured)
        throw timeout_error("TLS handshake with " + host + " timed out after " +
                            millis(opts.connect_timeout));
      c->io = stream(std::move(*secured));
    } else {
      c->io = stream(std::move(tcp));
    }
    co_return c;
  }

  // A new connection for `u` on a slot of `p` (already counted in open).
  task<std::unique_ptr<pooled_connection>> connect_on_slot(const url& u, origin_pool& p) {
    std::unique_ptr<pooled_connection> c;
    std::exception_ptr failure;
    try {
      c = co_await connect_new(u);
    } catch (...) {
      failure = std::current_exception();
    }
    if (failure) {
      pool.closed(p);
      std::rethrow_exception(failure);
    }
    pool.adopt(*c, p);
    ++stats.created;
    co_return c;
  }

  // A connection for `u` when its pool had no idle one: a new one when the
  // limits allow; otherwise waits, in arrival order, for one to be handed
  // over (a connection of its origin, or a slot).
  task<std::unique_ptr<pooled_connection>> acquire(const url& u, origin_pool& p, bool& reused) {
    // Whatever is free now, earlier waiters could not use (dispatch runs on
    // every release): a newcomer does not jump the queue by taking it.
    if (pool.take_slot(p)) {
      reused = false;
      co_return co_await connect_on_slot(u, p);
    }
    pool_waiter w(p);
    pool.wait(w);
    std::exception_ptr failure;
    try {
      co_await w.ready.wait();
    } catch (...) {
      failure = std::current_exception();
    }
    if (failure) {
      pool.abandon(w);  // cancelled: leave the queue, pass on what was handed over
      std::rethrow_exception(failure);
    }
    if (w.handed) {
      reused = true;
      co_return std::move(w.handed);
    }
    reused = false;
    co_return co_await connect_on_slot(u, p);
  }

  // The body of the response whose headers `c` has read, taken as it
  // arrives: decoded by `dec` (if any) in pieces, into the response's body
  // or `ro.sink`. Every piece counts against `limit`, and the loop is
  // yielded to now and then, so the request's deadline bounds the work.
  task<void> receive_body(pooled_connection& c, const request_options& ro, content_decoder* dec,
                          std::uint64_t limit) {
    message_reader& reader = c.reader;
    response& head = reader.parser().response_message();
    body_sink* sink = ro.sink;
    if (sink != nullptr) co_await sink->start(head);
    std::string raw;      // the wire bytes the parser gave since the last turn
    std::string decoded;  // the decoded body, without a sink
    std::unique_ptr<char[]> piece;
    if (dec != nullptr) piece = std::make_unique_for_overwrite<char[]>(piece_size);
    std::uint64_t total = 0, since_yield = 0;
    for (;;) {
      raw.clear();
      raw.swap(head.body);  // the parser appends into head.body: take what it has
      if (!raw.empty()) {
        if (dec == nullptr) {
          co_await sink->write(raw);
        } else {
          dec->input(raw);
          for (std::size_t n = 0; (n = dec->output({piece.get(), piece_size})) != 0;) {
            total += n;
            if (total > limit)
              throw protocol_error("decoded body (" + dec->codings() + ") exceeds " + std::to_string(limit) +
                                   " bytes");
            if (sink != nullptr) {
              co_await sink->write(std::string_view(piece.get(), n));
            } else {
              decoded.append(piece.get(), n);
            }
            since_yield += n;
            if (since_yield >= yield_every) {
              since_yield = 0;
              co_await yield();
            }
          }
        }
      }
      if (reader.parser().complete()) break;
      co_await reader.read_more(c.io);
    }
    if (dec != nullptr) {
      dec->finish();
      head.headers.remove("Content-Encoding");
      if (sink == nullptr) head.body = std::move(decoded);
    }
  }

  // One request on one connection (no redirects), inside run()'s
  // move_on_at(deadline) when there is a deadline: reads bounded by it need
  // no timer of their own. `phase` names the step in progress, for run()'s
  // timeout message. `may_follow`: a redirect response would be followed
  // (its body is then counted, not kept, decoded or streamed).
  task<response> exchange(const url& u, const request& req, const request_options& ro, time_point deadline,
                          const char*& phase, bool may_follow, bool accept_encoding) {
    bool reused = false;
    phase = "waiting for a connection";
    origin_pool& p = pool.pool_for(u);
    std::unique_ptr<pooled_connection> c = pool.take_idle(p);
    if (c) {
      reused = true;
    } else {
      c = co_await acquire(u, p, reused);
    }
    if (reused) ++stats.reused;
    const bool streaming = ro.sink != nullptr;
    const std::uint64_t limit = ro.max_response_bytes != 0 ? ro.max_response_bytes
                                : streaming                ? std::numeric_limits<std::uint64_t>::max()
                                                           : opts.max_response_bytes;
    const bool head_request = req.method == "HEAD";
    // The connection's parser is fresh (new connection) or reset (a pooled
    // connection was reset when it went idle; one with leftover bytes is
    // never pooled): set this request's limits instead of rebuilding it.
    parse_limits limits;
    limits.max_header_bytes = opts.max_header_bytes;
    // No count of fields: a response head is bounded by its bytes alone,
    // as curl's is (many Set-Cookie fields are legitimate).
    limits.max_header_fields = std::numeric_limits<std::size_t>::max();
    limits.max_body_bytes = limit;
    limits.keep_body = ro.keep_body || streaming;
    message_reader& reader = c->reader;
    reader.parser().set_limits(limits);
    reader.parser().set_no_body(head_request);
    std::exception_ptr failure;
    bool got_any = false;
    response resp;
    try {
      // run() set Host already: no second host_header() per request. (Named,
      // not a conditional temporary inside the co_await: g++ 12 frees such a
      // temporary it never built; DEVELOPERS.md.)
      std::string host;
      if (!req.headers.contains("Host")) host = u.host_header();
      c->wire.clear();
      serialize_to(c->wire, req, host, accept_encoding ? accept_encoding_field : std::string_view{});
      phase = "sending the request";
      // Most requests fit the socket's send buffer at once: no write task.
      const std::size_t sent = c->io.try_write(c->wire);
      if (sent < c->wire.size()) co_await c->io.write_all(std::string_view(c->wire).substr(sent));
      if (c->wire.capacity() > 64 * 1024) std::string().swap(c->wire);  // no large upload kept in the pool
      // The header timeout needs a timer of its own only if it ends before
      // the request's deadline (never, when it is no shorter than the whole
      // request's timeout: no clock read then either).
      const std::optional<duration> total = ro.timeout ? ro.timeout : opts.request_timeout;
      time_point header_wait = time_point::max();
      if (deadline == time_point::max() || !total || opts.header_timeout < *total) {
        const time_point header_deadline = saturating_add(loop->now(), opts.header_timeout);
        if (header_deadline < deadline) header_wait = header_deadline;
      }
      phase = "waiting for the response headers";
      if (!co_await reader.wait_for_data(c->io, header_wait)) {
        if (header_wait != time_point::max() && loop->now() >= header_wait)
          throw timeout_error("waiting for the response headers timed out after " +
                              millis(opts.header_timeout));
        throw end_of_stream("the server closed the connection before responding");
      }
      got_any = true;
      // Interim (1xx) responses are skipped: they have no body, and the
      // final response follows on the same connection (RFC 9110 §15.2).
      for (unsigned interim = 0;; ++interim) {
        // A small response arrives in one read: parsed here, without a read task.
        if (!reader.parse_buffered(true)) {
          phase = "reading the response headers";
          co_await reader.read_headers(c->io, header_wait, "reading the response headers");
        }
        const int status = reader.parser().response_message().status;
        if (status >= 200) break;
        if (status == 101) {
          // Only an upgrade the caller asked for; the connection then leaves HTTP.
          if (!req.headers.contains("Upgrade"))
            throw protocol_error("101 Switching Protocols without an upgrade request");
          break;
        }
        if (interim >= opts.max_interim_responses)
          throw protocol_error("more than " + std::to_string(opts.max_interim_responses) +
                               " interim (1xx) responses");
        reader.next();
        reader.parser().set_limits(limits);
        reader.parser().set_no_body(head_request);
      }
      response& head = reader.parser().response_message();
      // One pass over the fields: the transfer coding is checked, and
      // every Content-Encoding field is taken as one list (RFC 9110 §5.3).
      std::string_view encoding;
      std::string encodings;  // only when there are several fields
      for (const auto& [name, value] : head.headers) {
        if (name.size() == 17 && iequals(name, "Transfer-Encoding")) {
          check_transfer_coding(value);
        } else if (name.size() == 16 && iequals(name, "Content-Encoding")) {
          if (!encoding.empty()) {
            if (encodings.empty()) encodings = encoding;
            encodings += ", ";
            encodings += value;
          }
          encoding = value;
        }
      }
      if (!encodings.empty()) encoding = encodings;
      const bool follow = may_follow && is_redirect_status(head.status) && head.headers.contains("Location");
      std::unique_ptr<content_decoder> dec;
      const bool empty = reader.parser().complete() && head.body.empty();
      if (follow) {
        // A redirect's body is only counted (and bounded).
        limits.keep_body = false;
        reader.parser().set_limits(limits);
        head.body.clear();
      } else if (opts.decompress && ro.keep_body && !empty && !encoding.empty()) {
        dec = content_decoder::make(encoding);
      }
      phase = "reading the response body";
      if (!follow && (streaming || dec)) {
        co_await receive_body(*c, ro, dec.get(), limit);
      } else if (!reader.parser().complete()) {
        co_await reader.read_message(c->io, time_point::max(), "reading the response body");
      }
      resp = std::move(reader.parser().response_message());
    } catch (...) {
      failure = std::current_exception();
    }
    if (failure) {
      ++stats.failed;
      pool.release(std::move(c), false);
      // A pooled connection the server had already closed: one retry on a
      // fresh connection, for requests that are safe to repeat.
      bool stale_reuse = false;
      if (reused && !got_any && idempotent(req.method)) {
        try {
          std::rethrow_exception(failure);
        } catch (const net::connection_error&) {
          stale_reuse = true;
        } catch (...) {
        }
      }
      if (!stale_reuse) std::rethrow_exception(failure);
      // Drop the origin's idle connections: if one was stale, they all may be.
      pool.close_idle(pool.pool_for(u));
      co_return co_await exchange(u, req, ro, deadline, phase, may_follow, accept_encoding);
    }
    ++stats.requests;
    // Reused only when nothing of this response can still be on the wire.
    const message_parser& parsed = reader.parser();
    // (An HTTP/1.0 message with Transfer-Encoding has faulty framing:
    // RFC 9112 §6.1 says to close the connection after it.)
    const bool reusable = parsed.keep_alive() && !reader.has_leftover() && !parsed.close_delimited() &&
                          !parsed.framing_ignored() && resp.status != 101 &&
                          !(resp.version_minor == 0 && resp.headers.contains("Transfer-Encoding"));
    pool.release(std::move(c), reusable);
    co_return resp;
  }

  // `parsed`, or else `raw` parsed here (inside the task: a bad URL fails
  // the await, not the call).
  task<response> run(std::string method, std::optional<url> parsed, std::string raw, headers h,
                     std::string body, request_options ro) {
    if (!parsed) parsed.emplace(url::parse(raw));
    url& u = *parsed;  // (not moved out: four strings fewer to move per request)
    const std::optional<duration> total = ro.timeout ? ro.timeout : opts.request_timeout;
    const time_point deadline = total ? saturating_add(loop->now(), *total) : time_point::max();
    const int max_redirects = ro.max_redirects >= 0 ? ro.max_redirects : opts.max_redirects;
    request req;
    req.method = std::move(method);
    req.headers = std::move(h);
    req.body = std::move(body);
    req.headers.reserve(req.headers.size() + 3);  // User-Agent, Host, maybe Authorization: one allocation
    // The URL's userinfo is a credential like Authorization (which wins, as
    // in curl): it goes to this origin only.
    if (!u.userinfo.empty() && !req.headers.contains("Authorization")) {
      if (auto basic = u.basic_authorization()) req.headers.add("Authorization", std::move(*basic));
    }
    if (!req.headers.contains("User-Agent")) req.headers.add("User-Agent", opts.user_agent);
    // Accept-Encoding is written by exchange() from a literal (its value is
    // too long for a small string: no allocation per request).
    const bool accept_encoding = opts.decompress && !req.headers.contains("Accept-Encoding");
    std::optional<redirect_follower> follower;  // from the first redirect on
    for (int hop = 0;; ++hop) {
      req.target = u.target;
      const std::string_view host = req.headers.set("Host", u.host_header());
      const char* phase = "";
      const bool may_follow = hop < max_redirects;
      std::optional<response> got;
      if (deadline == time_point::max()) {
        got.emplace(co_await exchange(u, req, ro, deadline, phase, may_follow, accept_encoding));
      } else {
        got =
            co_await move_on_at(deadline, exchange(u, req, ro, deadline, phase, may_follow, accept_encoding));
        if (!got)
          throw timeout_error("request to " + u.to_string() + " timed out after " +
                              millis(total.value_or(duration::zero())) + " (" + phase + ")");
      }
      response& resp = *got;
      if (is_redirect_status(resp.status)) {
        if (auto location = resp.headers.get("Location")) {
          if (may_follow) {
            // (hop 0 made it: `u` is still the URL asked for.)
            if (!follower) follower.emplace(u, opts.allow_insecure_redirects);
            follower->follow(u, req, resp.status, *location);
            continue;
          }
          if (max_redirects > 0)
            throw redirect_error("too many redirects: " + std::to_string(max_redirects) + " followed, and " +
                                 u.to_string() + " redirects again");
        }
      }
      // (From the Host value set above: the URL's string without another
      // host[:port] formatting.)
      resp.url.reserve(u.scheme.size() + 3 + host.size() + u.target.size());
      resp.url += u.scheme;
      resp.url += "://";
      resp.url += host;
      resp.url += u.target;
      resp.redirects = static_cast<unsigned>(hop);
      if (ro.throw_on_status && !resp.ok()) {
        std::optional<duration> retry_after;
        if (auto ra = resp.headers.get("Retry-After")) retry_after = parse_retry_after(*ra);
        throw http_status_error(resp.status, "HTTP " + std::to_string(resp.status) + " from " + resp.url,
                                retry_after);
      }
      co_return std::move(resp);
    }
  }
};

client::client() : client(client_options{}) {}

client::client(client_options opts) {
  if (event_loop::current() == nullptr)
    throw usage_error("http::client needs a running event_loop on this thread");
  impl_ = std::make_unique<impl>(std::move(opts));
}

client::~client() {
  if (impl_) close_idle();
}

// Not coroutines themselves: the response is moved up one level less.
task<response> client::send(std::string method, std::string target, headers h, std::string body,
                            request_options opts) {
  return impl_->run(std::move(method), std::nullopt, std::move(target), std::move(h), std::move(body), opts);
}

task<response> client::send(std::string method, url target, headers h, std::string body,
                            request_options opts) {
  return impl_->run(std::move(method), std::move(target), {}, std::move(h), std::move(body), opts);
}

client_statistics client::statistics() const noexcept {
  client_statistics s = impl_->stats;
  s.open = impl_->pool.open();
  s.idle = impl_->pool.idle();
  s.in_use = s.open - s.idle;
  s.waiting = impl_->pool.waiting();
  return s;
}

void client::close_idle() noexcept { impl_->pool.close_idle(); }

retry_policy http_retry_policy(std::string_view method, unsigned max_attempts, duration base_delay,
                               bool allow_unsafe) {
  retry_policy p;
  p.max_attempts = (allow_unsafe || idempotent(method)) ? max_attempts : 1;
  p.base_delay = base_delay;
  p.retryable = [](const std::exception_ptr& e) {
    try {
      std::rethrow_exception(e);
    } catch (const http_status_error& s) {
      return s.status() == 429 || s.status() >= 500;
    } catch (const error& x) {
      return x.kind_id() == error_kind::connect || x.kind_id() == error_kind::timeout;
    } catch (...) {
    }
    return false;
  };
  p.retry_after = [](const std::exception_ptr& e) -> std::optional<duration> {
    try {
      std::rethrow_exception(e);
    } catch (const http_status_error& s) {
      return s.retry_after();
    } catch (...) {
    }
    return std::nullopt;
  };
  return p;
}

}  // namespace spindle::http
