// http::client: a keep-alive pool per origin over spindle::net.

#include "spindle/http/client.hpp"

#include <algorithm>
#include <charconv>
#include <ctime>
#include <deque>
#include <list>

#include "spindle/cancel_scope.hpp"
#include "spindle/event.hpp"
#include "spindle/http/connection.hpp"
#include "spindle/http/url.hpp"
#include "spindle/net/tcp.hpp"
#include "spindle/net/tls.hpp"

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

struct origin_pool;

// One pooled connection.
struct connection {
  stream io;
  message_reader reader{message_parser::kind::response};
  origin_pool* pool = nullptr;  // a pool with a connection counted in it is never swept
  std::string wire;             // the request being sent (its capacity kept across requests)
  time_point idle_since{};
  std::uint64_t requests = 0;
};

struct origin_pool {
  std::deque<std::unique_ptr<connection>> idle;  // most recently used at the back
  std::size_t open = 0;
  std::size_t waiting = 0;  // acquirers of this origin in the wait list
};

// A task waiting for a connection. What frees up is handed over directly,
// in arrival order: an idle connection of its origin, or a slot (counted
// in open) to connect a new one. Nobody else can take it in between.
struct pool_waiter {
  explicit pool_waiter(origin_pool& p) : pool(&p) {}
  origin_pool* pool;  // never swept while it counts this waiter
  event ready{"http pool wait"};
  std::unique_ptr<connection> handed;
  bool slot = false;
};

bool idempotent(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "PUT" || method == "DELETE" ||
         method == "OPTIONS" || method == "TRACE";
}

std::string millis(duration d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms";
}

}  // namespace

struct client::impl {
  client_options opts;
  event_loop* loop;
  net::resolver dns;
  std::optional<net::tls_context> tls;  // made on first https request
  std::map<std::string, origin_pool> pools;
  std::size_t total_open = 0;
  std::list<pool_waiter*> waiting;  // FIFO
  std::uint64_t acquisitions = 0;
  client_statistics stats;
  // The last origin looked up: most runs send request after request to
  // one origin, found again without building its key.
  origin_pool* last_pool = nullptr;
  std::string last_scheme, last_host;
  std::uint16_t last_port = 0;

  explicit impl(client_options o) : opts(std::move(o)), loop(event_loop::current()), dns(*loop, opts.dns) {}

  net::tls_context& tls_ctx() {
    if (!tls) {
      net::tls_client_options t;
      t.verify = opts.verify_tls;
      t.ca_file = opts.ca_file;
      tls = net::tls_context::client(t);
    }
    return *tls;
  }

  void uncount(origin_pool& p) noexcept {
    --p.open;
    --total_open;
  }

  // A connection of `p` closed: its slot may serve a waiter.
  void closed(origin_pool& p) {
    uncount(p);
    dispatch();
  }

  // An idle connection for `origin`, if a live one is pooled.
  std::unique_ptr<connection> take_idle(origin_pool& p) {
    while (!p.idle.empty()) {
      std::unique_ptr<connection> c = std::move(p.idle.back());
      p.idle.pop_back();
      if (c->io.stale() || loop->coarse_now() - c->idle_since > opts.idle_timeout) {
        c->io.close();
        uncount(p);
        continue;
      }
      return c;
    }
    return nullptr;
  }

  // Room for one more connection to `p`, evicting another origin's idle
  // connection if the total limit is reached.
  bool take_slot(origin_pool& p) {
    if (p.open >= opts.max_connections_per_origin) return false;
    if (total_open >= opts.max_connections_total && !evict_one_idle()) return false;
    ++p.open;
    ++total_open;
    return true;
  }

  // Hands whatever is free to the waiters that can use it, oldest first.
  // One wake per hand-over: no herd re-checking the pool.
  void dispatch() {
    for (auto it = waiting.begin(); it != waiting.end();) {
      pool_waiter* w = *it;
      origin_pool& p = *w->pool;
      if (auto c = take_idle(p)) {
        w->handed = std::move(c);
      } else if (take_slot(p)) {
        w->slot = true;
      } else {
        ++it;
        continue;
      }
      --p.waiting;
      it = waiting.erase(it);
      w->ready.set();
    }
  }

  // Origins with nothing open and nobody waiting are forgotten now and
  // then, so a run over millions of hosts keeps a bounded map.
  void sweep_pools() {
    if (pools.size() < 256 || ++acquisitions % 1024 != 0) return;
    last_pool = nullptr;
    std::erase_if(pools, [](const auto& kv) {
      return kv.second.open == 0 && kv.second.idle.empty() && kv.second.waiting == 0;
    });
  }

  // Makes room under max_connections_total by closing the oldest idle connection elsewhere.
  bool evict_one_idle() {
    origin_pool* oldest = nullptr;
    for (auto& [key, p] : pools) {
      if (p.idle.empty()) continue;
      if (oldest == nullptr || p.idle.front()->idle_since < oldest->idle.front()->idle_since) oldest = &p;
    }
    if (oldest == nullptr) return false;
    oldest->idle.front()->io.close();
    oldest->idle.pop_front();
    uncount(*oldest);
    return true;
  }

  task<std::unique_ptr<connection>> connect_new(const url& u) {
    const std::string host = u.host;
    net::tcp_stream tcp = co_await net::connect(dns, host, u.port, {.timeout = opts.connect_timeout});
    auto c = std::make_unique<connection>();
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

  // A connection for `u` on `slot` (already counted in open): a new one.
  task<std::unique_ptr<connection>> connect_on_slot(const url& u, origin_pool& p) {
    std::unique_ptr<connection> c;
    std::exception_ptr failure;
    try {
      c = co_await connect_new(u);
    } catch (...) {
      failure = std::current_exception();
    }
    if (failure) {
      closed(p);
      std::rethrow_exception(failure);
    }
    c->pool = &p;
    ++stats.created;
    co_return c;
  }

  // The origin's pool (the caller takes an idle connection from it without
  // a task of its own: the usual case).
  origin_pool& pool_for(const url& u) {
    sweep_pools();
    if (last_pool != nullptr && last_port == u.port && last_host == u.host && last_scheme == u.scheme)
      return *last_pool;
    origin_pool& p = pools[u.origin()];
    last_pool = &p;
    last_scheme = u.scheme;
    last_host = u.host;
    last_port = u.port;
    return p;
  }

  // A connection for `u` when pool_for() had no idle one: a new one when
  // the limits allow; otherwise waits, in arrival order, for one to be
  // returned or closed.
  task<std::unique_ptr<connection>> acquire(const url& u, origin_pool& p, bool& reused) {
    // Whatever is free now, earlier waiters could not use (dispatch runs on
    // every release): a newcomer does not jump the queue by taking it.
    if (take_slot(p)) {
      reused = false;
      co_return co_await connect_on_slot(u, p);
    }
    dispatch();  // take_idle may have closed stale connections: their slots may serve others
    pool_waiter w(p);
    waiting.push_back(&w);
    ++p.waiting;
    std::exception_ptr failure;
    try {
      co_await w.ready.wait();
    } catch (...) {
      failure = std::current_exception();
    }
    if (failure) {
      // Cancelled: leave the queue, and pass on anything handed over meanwhile.
      if (auto it = std::find(waiting.begin(), waiting.end(), &w); it != waiting.end()) {
        waiting.erase(it);
        --p.waiting;
      }
      if (w.handed) release(std::move(w.handed), true);
      if (w.slot) closed(p);
      std::rethrow_exception(failure);
    }
    if (w.handed) {
      reused = true;
      co_return std::move(w.handed);
    }
    reused = false;
    co_return co_await connect_on_slot(u, p);
  }

  void release(std::unique_ptr<connection> c, bool reusable) {
    origin_pool& p = *c->pool;
    if (reusable && c->io.is_open()) {
      c->idle_since = loop->coarse_now();
      c->reader.next();
      p.idle.push_back(std::move(c));
      if (!waiting.empty()) dispatch();
      return;
    }
    c->io.close();
    closed(p);
  }

  // One request on one connection (no redirects), inside run()'s
  // move_on_at(deadline) when there is a deadline: reads bounded by it need
  // no timer of their own. `phase` names the step in progress, for run()'s
  // timeout message.
  task<response> exchange(const url& u, const request& req, const request_options& ro, time_point deadline,
                          const char*& phase) {
    bool reused = false;
    phase = "waiting for a connection";
    origin_pool& p = pool_for(u);
    std::unique_ptr<connection> c = take_idle(p);
    if (c) {
      reused = true;
    } else {
      c = co_await acquire(u, p, reused);
    }
    if (reused) ++stats.reused;
    const std::uint64_t limit = ro.max_response_bytes != 0 ? ro.max_response_bytes : opts.max_response_bytes;
    // The connection's parser is fresh (new connection) or reset (release()
    // calls next(); a connection with leftover bytes is never pooled): set
    // this request's limits instead of rebuilding it.
    parse_limits limits;
    limits.max_header_bytes = opts.max_header_bytes;
    limits.max_body_bytes = limit;
    limits.keep_body = ro.keep_body;
    message_reader& reader = c->reader;
    reader.parser().set_limits(limits);
    reader.parser().set_no_body(req.method == "HEAD");
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
      serialize_to(c->wire, req, host);
      phase = "sending the request";
      // Most requests fit the socket's send buffer at once: no write task.
      const std::size_t sent = c->io.try_write(c->wire);
      if (sent < c->wire.size()) co_await c->io.write_all(std::string_view(c->wire).substr(sent));
      if (c->wire.capacity() > 64 * 1024) std::string().swap(c->wire);  // no large upload kept in the pool
      // The header timeout needs a timer of its own only if it ends before
      // the request's deadline (never, when it is no shorter than the whole
      // request's timeout: no clock read then either).
      const duration total = ro.timeout != duration::zero() ? ro.timeout : opts.request_timeout;
      time_point header_wait = time_point::max();
      if (deadline == time_point::max() || opts.header_timeout < total) {
        const time_point header_deadline = loop->now() + opts.header_timeout;
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
      // A small response arrives in one read: parsed here, without a read task.
      if (!reader.parse_buffered()) {
        phase = "reading the response headers";
        if (!reader.parser().headers_complete())
          co_await reader.read_headers(c->io, header_wait, "reading the response headers");
        phase = "reading the response body";
        co_await reader.read_message(c->io, time_point::max(), "reading the response body");
      }
      resp = std::move(reader.parser().response_message());
    } catch (...) {
      failure = std::current_exception();
    }
    if (failure) {
      ++stats.failed;
      release(std::move(c), false);
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
      co_return co_await exchange_fresh(u, req, ro, deadline, phase);
    }
    ++stats.requests;
    const bool reusable = reader.parser().keep_alive() && !reader.has_leftover() &&
                          !reader.parser().close_delimited() && resp.status != 101;
    release(std::move(c), reusable);
    co_return resp;
  }

  task<response> exchange_fresh(const url& u, const request& req, const request_options& ro,
                                time_point deadline, const char*& phase) {
    // Drop the origin's idle connections: if one was stale, they all may be.
    origin_pool& p = pool_for(u);
    while (!p.idle.empty()) {
      p.idle.back()->io.close();
      p.idle.pop_back();
      closed(p);
    }
    co_return co_await exchange(u, req, ro, deadline, phase);
  }

  // `parsed`, or else `raw` parsed here (inside the task: a bad URL fails
  // the await, not the call).
  task<response> run(std::string method, std::optional<url> parsed, std::string raw, headers h,
                     std::string body, request_options ro) {
    if (!parsed) parsed.emplace(url::parse(raw));
    url& u = *parsed;  // (not moved out: four strings fewer to move per request)
    const duration total = ro.timeout != duration::zero() ? ro.timeout : opts.request_timeout;
    const time_point deadline = total > duration::zero() ? loop->now() + total : time_point::max();
    const int max_redirects = ro.max_redirects >= 0 ? ro.max_redirects : opts.max_redirects;
    request req;
    req.method = std::move(method);
    req.headers = std::move(h);
    req.body = std::move(body);
    req.headers.reserve(req.headers.size() + 3);  // User-Agent, Accept-Encoding, Host: one allocation
    if (!req.headers.contains("User-Agent")) req.headers.add("User-Agent", opts.user_agent);
    if (opts.decompress && !req.headers.contains("Accept-Encoding"))
      req.headers.add("Accept-Encoding", "gzip, deflate");
    for (int hop = 0;; ++hop) {
      req.target = u.target;
      req.headers.set("Host", u.host_header());
      const char* phase = "";
      std::optional<response> got;
      if (deadline == time_point::max()) {
        got.emplace(co_await exchange(u, req, ro, deadline, phase));
      } else {
        got = co_await move_on_at(deadline, exchange(u, req, ro, deadline, phase));
        if (!got)
          throw timeout_error("request to " + u.to_string() + " timed out after " + millis(total) + " (" +
                              phase + ")");
      }
      response& resp = *got;
      const bool redirect = resp.status == 301 || resp.status == 302 || resp.status == 303 ||
                            resp.status == 307 || resp.status == 308;
      auto location = resp.headers.get("Location");
      if (redirect && location && hop < max_redirects) {
        u = u.resolve(*location);
        if (resp.status == 303 || ((resp.status == 301 || resp.status == 302) && req.method == "POST")) {
          req.method = "GET";
          req.body.clear();
          req.headers.remove("Content-Length");
          req.headers.remove("Content-Type");
        }
        continue;
      }
      if (redirect && location && max_redirects > 0 && hop >= max_redirects)
        throw protocol_error("too many redirects (more than " + std::to_string(max_redirects) + ")");
      if (opts.decompress && ro.keep_body)
        decode_content(resp, ro.max_response_bytes != 0 ? ro.max_response_bytes : opts.max_response_bytes);
      if (ro.throw_on_status && !resp.ok()) {
        std::optional<duration> retry_after;
        if (auto ra = resp.headers.get("Retry-After")) retry_after = parse_retry_after(*ra);
        throw http_status_error(resp.status, "HTTP " + std::to_string(resp.status) + " from " + u.to_string(),
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
  s.open = impl_->total_open;
  s.idle = 0;
  for (const auto& [key, p] : impl_->pools) s.idle += p.idle.size();
  s.in_use = s.open - s.idle;
  s.waiting = impl_->waiting.size();
  return s;
}

void client::close_idle() noexcept {
  for (auto& [key, p] : impl_->pools) {
    while (!p.idle.empty()) {
      p.idle.back()->io.close();
      p.idle.pop_back();
      impl_->uncount(p);
    }
  }
  impl_->dispatch();  // freed slots go to waiters, if any
}

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
      const std::string_view k = x.kind();
      return k == "connect" || k == "timeout";
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
