// http::server: accept loop with admission under pressure, one task per
// connection, timeouts by phase, RFC 9112 request rules, streaming bodies,
// graceful stop.

#include "spindle/http/server.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <string>

#include "spindle/cancel_scope.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/sleep.hpp"

namespace spindle::http {

using namespace std::string_view_literals;

struct server::conn {
  join_handle<void> task;
  bool idle = true;     // waiting for a request (stop() closes it at once; eviction takes it)
  bool listed = false;  // in the server's idle list
  bool evicted = false;
  conn* prev = nullptr;  // the idle list
  conn* next = nullptr;
  std::list<std::shared_ptr<conn>>::iterator self;
};

namespace {

// An answer the server gives itself (a request it will not pass on).
struct rejection {
  int status;
  std::string why;
};

// Where a connection is: what a timeout there means.
enum class phase : std::uint8_t { head, body, handler, respond };

}  // namespace

// One connection's stream and reader, and the request in progress.
struct server::exchange {
  stream s;
  message_reader reader;
  server* srv;
  phase at = phase::head;
  bool continue_owed = false;  // "100 Continue" before the first body read
  std::uint64_t reserved = 0;  // of the server's buffered body budget
  std::exception_ptr body_failure;

  exchange(server* owner, const server_options& o)
      : reader(message_parser::kind::request, {.max_header_bytes = o.max_header_bytes,
                                               .max_header_fields = o.max_header_fields,
                                               .max_body_bytes = o.max_body_bytes}),
        srv(owner) {}

  void release() noexcept {
    srv->buffered_bytes_ -= reserved;
    reserved = 0;
  }

  // Writes all of `data`, each piece within send_timeout.
  // Writes what the connection takes now: true when that was all (the
  // usual response; no coroutine for it), else `data` is what is left.
  bool sent_now(std::string_view& data) {
    data.remove_prefix(s.try_write(data));
    return data.empty();
  }

  task<void> send(std::string_view data) {
    const std::size_t sent = s.try_write(data);
    data.remove_prefix(sent);
    constexpr std::size_t piece = 256 * 1024;
    while (!data.empty()) {
      const std::string_view now = data.substr(0, piece);
      task<void> write = s.write_all(now);  // (named: g++ 12, DEVELOPERS.md)
      const bool written = co_await move_on_after(srv->opts_.send_timeout, std::move(write));
      if (!written) throw timeout_error("writing the response timed out");
      data.remove_prefix(now.size());
    }
  }

  task<void> send_continue() {
    continue_owed = false;
    co_await send("HTTP/1.1 100 Continue\r\n\r\n"sv);
  }

  // The client may still be sending (a body the server did not read,
  // pipelined requests): closing now would answer those bytes with an RST
  // that can destroy the response before the client reads it. So send a
  // FIN and read and discard until the client closes, it is quiet for
  // linger_idle, or linger_total passed (nginx's lingering close, with
  // tighter bounds).
  task<void> linger() {
    constexpr duration linger_total = std::chrono::seconds(2);
    constexpr duration linger_idle = std::chrono::seconds(1);
    event_loop& loop = *event_loop::current();
    const time_point until = saturating_add(loop.now(), linger_total);
    s.shutdown_write();
    char sink[16 * 1024];
    try {
      for (;;) {
        task<std::size_t> read = s.read_some(std::span<char>(sink, sizeof sink));
        const auto n =
            co_await move_on_at(std::min(until, saturating_add(loop.now(), linger_idle)), std::move(read));
        if (!n || *n == 0) break;
      }
    } catch (const cancelled_error&) {
      throw;
    } catch (...) {  // a reset: the client is gone
    }
  }

  // Reads and parses more of the body: some bytes within body_timeout.
  task<void> read_body() {
    task<void> more = reader.read_more(s);  // (named: g++ 12, DEVELOPERS.md)
    const bool read = co_await move_on_after(srv->opts_.body_timeout, std::move(more));
    if (!read) throw timeout_error("reading the request body timed out");
  }
};

struct body_reader::source {
  server::exchange* x;
  std::string piece;
  std::string early;  // body bytes that came with the head, for the first read
};

struct body_writer::sink {
  server::exchange* x;
  bool chunked = false;
  std::optional<std::uint64_t> length;  // declared
  std::uint64_t written = 0;
  std::string buffer;
};

// ---- body_reader / body_writer ----------------------------------------------

task<std::string_view> body_reader::read() {
  server::exchange& x = *src_->x;
  message_parser& p = x.reader.parser();
  src_->piece.clear();
  if (!src_->early.empty()) {
    std::swap(src_->piece, src_->early);
    co_return std::string_view(src_->piece);
  }
  try {
    x.at = phase::body;
    if (x.continue_owed) co_await x.send_continue();
    while (p.request_message().body.empty() && !p.complete()) co_await x.read_body();
    x.at = phase::handler;
  } catch (const cancelled_error&) {
    throw;
  } catch (...) {
    x.body_failure = std::current_exception();  // the server answers it (413, 408...) if the handler fails
    throw;
  }
  std::swap(src_->piece, p.request_message().body);
  co_return std::string_view(src_->piece);
}

task<std::string> body_reader::read_all() {
  std::string all;
  for (;;) {
    const std::string_view piece = co_await read();
    if (piece.empty()) break;
    all += piece;
  }
  co_return all;
}

bool body_reader::done() const noexcept {
  message_parser& p = src_->x->reader.parser();
  return src_->early.empty() && p.complete() && p.request_message().body.empty();
}

std::uint64_t body_reader::received() const noexcept { return src_->x->reader.parser().body_bytes(); }

task<void> body_writer::write(std::string_view data) {
  sink& k = *sink_;
  if (data.empty()) co_return;
  if (k.length && data.size() > *k.length - k.written)
    throw usage_error("body_writer: more than the declared Content-Length (" + std::to_string(*k.length) +
                      " bytes)");
  k.written += data.size();
  if (!k.chunked) {
    co_await k.x->send(data);
    co_return;
  }
  char size[20];
  const auto end = std::to_chars(size, size + sizeof size, data.size(), 16).ptr;
  k.buffer.clear();
  k.buffer.append(size, end);
  k.buffer += "\r\n"sv;
  k.buffer += data;
  k.buffer += "\r\n"sv;
  co_await k.x->send(k.buffer);
}

std::uint64_t body_writer::written() const noexcept { return sink_->written; }

// ---- server -----------------------------------------------------------------

server::server(handler h, server_options opts) : handler_(std::move(h)), opts_(std::move(opts)) {
  all_closed_.set();
}

server::~server() = default;

void server::stop() noexcept {
  if (stopping_) return;
  stopping_ = true;
  stop_requested_.set();
  try {
    if (acceptor_) acceptor_->cancel();
    for (auto& c : conns_)
      if (c->idle) c->task.cancel();
  } catch (...) {  // wrong thread: cancel() checks; stop() is documented loop-thread only
  }
}

task<void> server::serve(net::tcp_listener listener) {
  event_loop& loop = *event_loop::current();
  listener.reserve_descriptor();  // for shedding when out of descriptors
  acceptor_.emplace(loop.spawn(accept_loop(listener), "http accept"));
  bool cancelled = false;
  try {
    co_await stop_requested_.wait();
  } catch (const cancelled_error&) {
    cancelled = true;
  }
  stop();
  if (!cancelled && !conns_.empty()) {
    auto drained = all_closed_.wait();  // (named: g++ 12, DEVELOPERS.md)
    auto bounded = move_on_after(opts_.shutdown_grace, std::move(drained));
    co_await shielded(std::move(bounded));
  }
  for (auto& c : conns_) c->task.cancel();
  auto closed = all_closed_.wait();
  co_await shielded(std::move(closed));
  try {
    co_await shielded(std::move(*acceptor_));  // it ends cancelled: that is how it stops
  } catch (const cancelled_error&) {
  }
  acceptor_.reset();
  if (cancelled) throw cancelled_error();
}

namespace {
constexpr std::string_view busy_answer =
    "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 19\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    "server overloaded\r\n";
static_assert(busy_answer.size() - busy_answer.find("\r\n\r\n") - 4 == 19, "busy_answer's Content-Length");
}  // namespace

task<void> server::accept_loop(net::tcp_listener& listener) {
  event_loop& loop = *event_loop::current();
  for (;;) {
    int exhausted = 0;
    net::tcp_stream raw = co_await listener.accept_or_exhausted(&exhausted);
    if (exhausted != 0) {
      // Out of descriptors: established connections carry on. Close the
      // longest-idle one so the next accept succeeds, or, with none idle,
      // answer a waiting client 503 through the spare descriptor.
      ++stats_.fd_exhaustion;
      if (evicting_ > 0 || evict_idle()) {
        co_await sleep_for(std::chrono::milliseconds(1));  // the evicted task closes its descriptor
      } else if (listener.shed(busy_answer)) {
        ++stats_.connections_shed;
      } else {
        co_await sleep_for(std::chrono::milliseconds(10));  // no spare: wait for descriptors
      }
      continue;
    }
    ++stats_.connections_accepted;
    if (!stopping_ && conns_.size() - evicting_ >= opts_.max_connections) evict_idle();
    if (stopping_ || conns_.size() - evicting_ >= opts_.max_connections) {
      ++stats_.connections_rejected;
      if (!stopping_) {
        try {
          raw.try_write(busy_answer);
        } catch (...) {
        }
      }
      continue;  // closed by its destructor
    }
    auto c = std::make_shared<conn>();
    conns_.push_back(c);
    c->self = std::prev(conns_.end());
    all_closed_.clear();
    ++stats_.connections_open;
    c->task = loop.spawn(serve_connection(c, std::move(raw)), "http connection");
  }
}

void server::set_idle(conn& c, bool idle) noexcept {
  c.idle = idle;
  if (idle && !c.listed && !c.evicted) {
    c.prev = idle_tail_;
    c.next = nullptr;
    (idle_tail_ != nullptr ? idle_tail_->next : idle_head_) = &c;
    idle_tail_ = &c;
    c.listed = true;
  } else if (!idle && c.listed) {
    (c.prev != nullptr ? c.prev->next : idle_head_) = c.next;
    (c.next != nullptr ? c.next->prev : idle_tail_) = c.prev;
    c.prev = c.next = nullptr;
    c.listed = false;
  }
}

bool server::evict_idle() noexcept {
  conn* c = idle_head_;
  if (c == nullptr) return false;
  set_idle(*c, false);
  c->evicted = true;
  ++evicting_;
  ++stats_.connections_evicted;
  try {
    c->task.cancel();
  } catch (...) {
  }
  return true;
}

void server::connection_ended(conn* c) noexcept {
  // The task holds its conn and the conn holds the task's handle: let go of
  // the handle so both can be freed when the task ends.
  set_idle(*c, false);
  if (c->evicted) --evicting_;
  c->task.detach();
  conns_.erase(c->self);
  --stats_.connections_open;
  if (conns_.empty()) all_closed_.set();
}

namespace {

time_point after(duration d) { return saturating_add(event_loop::current()->now(), d); }

bool is_digit(char c) { return c >= '0' && c <= '9'; }

constexpr std::array<bool, 256> host_chars = [] {
  std::array<bool, 256> t{};
  for (int c = 0; c < 256; ++c)
    t[c] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           "-._~%!$&'()*+,;="sv.find(static_cast<char>(c)) != std::string_view::npos;
  return t;
}();

// uri-host [ ":" port ] (RFC 9110 §7.2, RFC 3986 §3.2.2); empty is valid.
bool valid_authority(std::string_view a) {
  if (a.empty()) return true;
  std::string_view host = a;
  if (a.front() == '[') {  // IP-literal
    const std::size_t close = a.find(']');
    if (close == std::string_view::npos) return false;
    for (char ch : a.substr(1, close - 1))
      if (!(std::isxdigit(static_cast<unsigned char>(ch)) != 0 || ch == ':' || ch == '.')) return false;
    host = a.substr(0, close + 1);
    a.remove_prefix(close + 1);
    if (!a.empty() && a.front() != ':') return false;
  } else {
    const std::size_t colon = a.find(':');
    host = a.substr(0, colon);
    a = colon == std::string_view::npos ? std::string_view() : a.substr(colon);
    if (host.empty()) return false;
    for (char ch : host)  // reg-name / IPv4address: unreserved, pct-encoded, sub-delims
      if (!host_chars[static_cast<unsigned char>(ch)]) return false;
  }
  if (!a.empty()) {  // ":" port
    a.remove_prefix(1);
    if (a.size() > 5 || !std::all_of(a.begin(), a.end(), is_digit)) return false;
  }
  return true;
}

// RFC 9112 §3.2 (Host) and §3.2.2 (absolute-form): fills req.authority and
// turns an absolute-form target into origin-form, or throws a rejection.
// Returns whether the request has an Expect field (one scan for both).
bool apply_request_rules(request& req) {
  std::string_view host;
  int hosts = 0;
  bool expect = false;
  for (const auto& [name, value] : req.headers) {
    if (name.size() == 4 && iequals(name, "Host")) {
      ++hosts;
      host = value;
    } else if (name.size() == 6 && iequals(name, "Expect")) {
      expect = true;
    }
  }
  if (hosts > 1) throw rejection{400, "more than one Host field"};
  if (hosts == 0 && req.version_minor >= 1) throw rejection{400, "HTTP/1.1 request without Host"};
  if (!valid_authority(host)) throw rejection{400, "invalid Host field"};
  std::string_view t = req.target;
  if (t.starts_with('/')) {
    req.authority = host;
    return expect;
  }
  if (t == "*") {
    if (req.method != "OPTIONS") throw rejection{400, "'*' is a target for OPTIONS only"};
    req.authority = host;
    return expect;
  }
  if (req.method == "CONNECT") {  // authority-form
    if (!valid_authority(t) || t.empty()) throw rejection{400, "invalid CONNECT target"};
    req.authority = t;
    return expect;
  }
  // absolute-form: scheme "://" authority path-abempty [ "?" query ]
  const std::size_t sep = t.find("://");
  if (sep == std::string_view::npos) throw rejection{400, "invalid request target"};
  const std::string_view scheme = t.substr(0, sep);
  if (!iequals(scheme, "http") && !iequals(scheme, "https"))
    throw rejection{400, "unsupported scheme in the request target"};
  t.remove_prefix(sep + 3);
  const std::size_t end = t.find_first_of("/?");
  const std::string_view authority = t.substr(0, end);
  if (authority.find('@') != std::string_view::npos)
    throw rejection{400, "userinfo in the request target"};  // RFC 9110 §4.2.4
  if (authority.empty() || !valid_authority(authority))
    throw rejection{400, "invalid authority in the target"};
  std::string origin_form = end == std::string_view::npos ? "/" : std::string(t.substr(end));
  if (origin_form.front() == '?') origin_form.insert(0, 1, '/');
  req.authority = authority;
  req.target = std::move(origin_form);
  return expect;
}

// Expect (RFC 9110 §10.1.1): true if "100 Continue" is owed; throws 417 for
// other expectations. HTTP/1.0 requests' Expect is ignored.
bool expects_continue(const request& req) {
  if (req.version_minor == 0) return false;
  bool expects = false;
  for (const auto& [name, value] : req.headers) {
    if (!iequals(name, "Expect")) continue;
    for (std::string_view rest = value; !rest.empty();) {
      const std::string_view e = next_list_element(rest);
      if (e.empty()) continue;
      if (!iequals(e, "100-continue")) throw rejection{417, "unsupported expectation"};
      expects = true;
    }
  }
  return expects;
}

std::optional<std::uint64_t> declared_length(const request& req) {
  const auto v = req.headers.get("Content-Length");
  if (!v) return std::nullopt;
  std::uint64_t n = 0;
  std::from_chars(v->data(), v->data() + v->size(), n);  // (the parser checked it)
  return n;
}

response plain(int status, std::string_view why) {
  response r;
  r.status = status;
  r.body = std::string(why) + "\n";
  r.headers.set("Content-Type", "text/plain");
  return r;
}

// The status line and fields, as they are (no Content-Length added).
std::string serialize_head(const response& r) {
  std::string out;
  out.reserve(128);
  out += "HTTP/1.1 "sv;
  out += std::to_string(r.status);
  out += ' ';
  out += r.reason.empty() ? std::string(reason_phrase(r.status)) : r.reason;
  out += "\r\n"sv;
  for (const auto& [name, value] : r.headers) {
    out += name;
    out += ": "sv;
    out += value;
    out += "\r\n"sv;
  }
  out += "\r\n"sv;
  return out;
}

}  // namespace

task<void> server::serve_connection(std::shared_ptr<conn> c, net::tcp_stream raw) {
  event_loop& loop = *event_loop::current();
  const time_point accepted = loop.now();
  exchange x(this, opts_);
  std::exception_ptr failure;
  set_idle(*c, true);  // silent until its first byte: evictable
  try {
    if (opts_.tls) {
      auto handshake = net::tls_stream::accept(std::move(raw), *opts_.tls);  // (named: g++ 12)
      auto secured = co_await move_on_at(accepted + opts_.header_timeout, std::move(handshake));
      if (secured) x.s = stream(std::move(*secured));
    } else {
      x.s = stream(std::move(raw));
    }
  } catch (...) {
    failure = std::current_exception();
  }
  if (failure || !x.s.is_open()) {
    ++stats_.bad_requests;  // a failed or too slow TLS handshake (or evicted during it)
    connection_ended(c.get());
    co_return;
  }

  bool first = true;
  bool in_flight = false;
  bool answered = false;  // the loop ended after a response (not silence, a timeout or a cancel)
  std::optional<rejection> answer;
  try {
    for (;;) {
      set_idle(*c, true);
      if (stopping_) break;
      // A new connection's head must be complete header_timeout after
      // accept; a kept-alive one may idle keepalive_timeout, then has
      // header_timeout from the first byte.
      const time_point quiet_until = first ? accepted + opts_.header_timeout : after(opts_.keepalive_timeout);
      if (!co_await x.reader.wait_for_data(x.s, quiet_until)) {
        if (first && loop.now() >= quiet_until) ++stats_.header_timeouts;  // silent: closed, no answer
        break;
      }
      set_idle(*c, false);
      x.at = phase::head;
      // A small request arrives in one read: parsed here, without read tasks or timers.
      if (!x.reader.parse_buffered(true)) {
        co_await x.reader.read_headers(x.s,
                                       first ? accepted + opts_.header_timeout : after(opts_.header_timeout),
                                       "reading the request headers");
      }
      first = false;
      in_flight = true;
      ++stats_.requests_in_flight;
      const bool keep = co_await serve_request(x);
      --stats_.requests_in_flight;
      in_flight = false;
      ++stats_.requests;
      if (!keep) {
        answered = true;
        break;
      }
      x.reader.next();
    }
  } catch (const rejection& r) {
    answer = r;
  } catch (...) {
    failure = std::current_exception();
  }
  x.release();
  if (in_flight) --stats_.requests_in_flight;
  if (failure) {
    try {
      std::rethrow_exception(failure);
    } catch (const protocol_error& e) {
      switch (x.reader.parser().failure()) {
        case parse_failure::head_too_large:
        case parse_failure::too_many_fields:
          ++stats_.heads_rejected;
          answer = rejection{431, e.what()};
          break;
        case parse_failure::body_too_large:
          ++stats_.bodies_rejected;
          answer = rejection{413, e.what()};
          break;
        case parse_failure::version_not_supported: answer = rejection{505, e.what()}; break;
        default: answer = rejection{400, e.what()}; break;
      }
    } catch (const timeout_error& e) {
      if (x.at == phase::head) {
        ++stats_.header_timeouts;
        answer = rejection{408, e.what()};
      } else if (x.at == phase::body) {
        ++stats_.body_timeouts;
        answer = rejection{408, e.what()};
      } else {
        ++stats_.send_timeouts;  // the client stopped reading: nothing more to say
      }
    } catch (...) {
      // The connection is gone, or cancelled (stop, eviction): nothing to say.
    }
  }
  if (answer) {
    ++stats_.bad_requests;
    response r = plain(answer->status, answer->why);
    r.headers.set("Connection", "close");
    if (answer->status == 503) r.headers.set("Retry-After", "1");
    // Best effort, briefly: the client may be gone or not reading.
    try {
      const std::string wire = serialize(r);
      task<void> write = x.s.write_all(wire);  // (named: g++ 12, DEVELOPERS.md)
      answered = co_await move_on_after(std::chrono::seconds(1), std::move(write));
    } catch (...) {
    }
  }
  // Unread bytes from the client (a body, pipelined requests): linger.
  if (answered && (!x.reader.parser().complete() || x.reader.has_leftover() || x.s.stale())) {
    set_idle(*c, true);  // evictable meanwhile
    try {
      co_await x.linger();
    } catch (...) {  // cancelled (stop, eviction): close now
    }
  }
  x.s.close();
  connection_ended(c.get());
}

task<bool> server::serve_request(exchange& x) {
  message_parser& p = x.reader.parser();
  request& req = p.request_message();
  const bool expect = apply_request_rules(req);
  x.continue_owed = expect && expects_continue(req) && !p.complete() && req.body.empty();

  // (A streamed request always has its body_stream, even when the whole
  // body, or none, came with the head.)
  const bool streaming = opts_.stream_body && opts_.stream_body(req);
  std::optional<body_reader::source> source;
  std::optional<body_reader> reader;
  if (streaming) {
    // Body bytes that came with the head go to the reader: the handler
    // sees request::body empty, as documented.
    source.emplace(body_reader::source{&x, {}, std::move(req.body)});
    req.body.clear();
    reader.emplace(body_reader(*source));
    req.body_stream = &*reader;
  } else if (!p.complete()) {
    // The buffered form: the whole body, within the server's budget.
    x.at = phase::body;
    const auto length = declared_length(req);
    const std::uint64_t want = length.value_or(req.body.size());
    if (want > opts_.max_buffered_body_total - std::min(buffered_bytes_, opts_.max_buffered_body_total)) {
      ++stats_.bodies_deferred;
      throw rejection{503, "too many request bodies in progress; retry"};
    }
    x.reserved = want;
    buffered_bytes_ += want;
    if (x.continue_owed) co_await x.send_continue();
    while (!p.complete()) {
      co_await x.read_body();
      if (req.body.size() > x.reserved) {  // chunked: reserved as it arrives
        const std::uint64_t more = req.body.size() - x.reserved;
        if (more > opts_.max_buffered_body_total - std::min(buffered_bytes_, opts_.max_buffered_body_total)) {
          ++stats_.bodies_deferred;
          throw rejection{503, "too many request bodies in progress; retry"};
        }
        x.reserved += more;
        buffered_bytes_ += more;
      }
    }
  }

  x.at = phase::handler;
  response resp;
  bool handler_failed = false;
  try {
    resp = co_await handler_(req);
  } catch (const cancelled_error&) {
    throw;
  } catch (...) {
    if (x.body_failure) std::rethrow_exception(x.body_failure);  // answered as the body's fault
    handler_failed = true;
  }
  req.body_stream = nullptr;
  if (!handler_failed && (resp.status < 100 || resp.status > 999)) handler_failed = true;  // not a status
  if (handler_failed) {
    ++stats_.handler_failures;
    resp = plain(500, "internal server error");
  }

  // Keep the connection only if the next request can be found on it.
  bool keep = p.keep_alive() && !stopping_ && !p.upgrade() && p.complete() &&
              !resp.headers.has_token("Connection", "close");
  const bool head_request = req.method == "HEAD";
  const bool no_body_status =
      resp.status == 204 || resp.status == 304 || (resp.status >= 100 && resp.status < 200);
  const bool produce = resp.body_producer && !head_request && !no_body_status;
  std::optional<std::uint64_t> length;
  if (produce) {
    if (const auto v = resp.headers.get("Content-Length")) {
      std::uint64_t n = 0;
      const auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
      if (ec == std::errc() && end == v->data() + v->size()) length = n;
    }
    if (!length) {
      resp.headers.remove("Content-Length");
      if (req.version_minor >= 1) {
        resp.headers.set("Transfer-Encoding", "chunked");
      } else {
        keep = false;  // HTTP/1.0: the body ends with the connection
      }
    }
  }
  if (!keep) {
    resp.headers.set("Connection", "close");
  } else if (req.version_minor == 0) {
    resp.headers.set("Connection", "keep-alive");  // RFC 9112 §9.3: say so to an HTTP/1.0 client
  }

  x.at = phase::respond;
  if (resp.body_producer && !produce) {  // HEAD, 204, 304: the head only, as the handler wrote it
    co_await x.send(serialize_head(resp));
    x.release();
    co_return keep;
  }
  if (!produce) {
    // (Named: the wire text outlives the write.)
    const std::string wire = serialize(resp, head_request);
    std::string_view rest = wire;
    if (!x.sent_now(rest)) co_await x.send(rest);
    x.release();
    co_return keep;
  }
  const std::string head = serialize_head(resp);
  co_await x.send(head);
  body_writer::sink sink{&x, !length && req.version_minor >= 1, length, 0, {}};
  body_writer writer(sink);
  try {
    co_await resp.body_producer(writer);
  } catch (const cancelled_error&) {
    throw;
  } catch (const net::connection_error&) {
    throw;
  } catch (const timeout_error&) {
    throw;
  } catch (...) {
    ++stats_.handler_failures;  // the head is out: the connection is closed, the body cut short
    co_return false;
  }
  if (length && sink.written != *length) {
    ++stats_.handler_failures;  // fewer bytes than declared: the client sees the body cut short
    co_return false;
  }
  if (sink.chunked) co_await x.send("0\r\n\r\n"sv);
  x.release();
  co_return keep;
}

}  // namespace spindle::http
