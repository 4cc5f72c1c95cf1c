// http::server: accept loop, one task per connection, graceful stop.

#include "spindle/http/server.hpp"

#include <string>

#include "spindle/cancel_scope.hpp"
#include "spindle/event_loop.hpp"

namespace spindle::http {

struct server::conn {
  join_handle<void> task;
  bool idle = true;  // waiting for a request (stop() closes it at once)
  std::list<std::shared_ptr<conn>>::iterator self;
};

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
  acceptor_.emplace(loop.spawn(accept_loop(listener), "http accept"));
  bool cancelled = false;
  try {
    co_await stop_requested_.wait();
  } catch (const cancelled_error&) {
    cancelled = true;
  }
  stop();
  if (!cancelled && !conns_.empty())
    co_await shielded(move_on_after(opts_.shutdown_grace, all_closed_.wait()));
  for (auto& c : conns_) c->task.cancel();
  co_await shielded(all_closed_.wait());
  try {
    co_await shielded(std::move(*acceptor_));  // it ends cancelled: that is how it stops
  } catch (const cancelled_error&) {
  }
  acceptor_.reset();
  if (cancelled) throw cancelled_error();
}

task<void> server::accept_loop(net::tcp_listener& listener) {
  event_loop& loop = *event_loop::current();
  for (;;) {
    net::tcp_stream raw = co_await listener.accept();
    ++stats_.connections_accepted;
    if (stopping_ || conns_.size() >= opts_.max_connections) {
      ++stats_.connections_rejected;
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

void server::connection_ended(conn* c) noexcept {
  // The task holds its conn and the conn holds the task's handle: let go of
  // the handle so both can be freed when the task ends.
  c->task.detach();
  conns_.erase(c->self);
  --stats_.connections_open;
  if (conns_.empty()) all_closed_.set();
}

namespace {

// What to answer when a request could not be read, or nothing.
std::optional<response> error_response(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const protocol_error& p) {
    const std::string what = p.what();
    response r;
    r.status = what.find("headers exceed") != std::string::npos ? 431
               : what.find("body exceeds") != std::string::npos ? 413
                                                                : 400;
    r.body = what + "\n";
    return r;
  } catch (const timeout_error&) {
    response r;
    r.status = 408;
    r.body = "request timeout\n";
    return r;
  } catch (...) {
  }
  return std::nullopt;  // the connection is gone or cancelled: nothing to say
}

time_point after(duration d) { return event_loop::current()->now() + d; }

}  // namespace

task<void> server::serve_connection(std::shared_ptr<conn> c, net::tcp_stream raw) {
  stream s;
  std::exception_ptr failure;
  try {
    if (opts_.tls) {
      auto secured =
          co_await move_on_after(opts_.header_timeout, net::tls_stream::accept(std::move(raw), *opts_.tls));
      if (secured) s = stream(std::move(*secured));
    } else {
      s = stream(std::move(raw));
    }
  } catch (...) {
    failure = std::current_exception();
  }
  if (failure || !s.is_open()) {
    ++stats_.bad_requests;  // a failed or too slow TLS handshake
    connection_ended(c.get());
    co_return;
  }

  message_reader reader(message_parser::kind::request,
                        {.max_header_bytes = opts_.max_header_bytes, .max_body_bytes = opts_.max_body_bytes});
  bool in_flight = false;
  try {
    for (;;) {
      c->idle = true;
      if (stopping_) break;
      // Idle until the next request starts, then header_timeout for its head.
      if (!co_await reader.wait_for_data(s, after(opts_.keepalive_timeout))) break;
      c->idle = false;
      // A small request arrives in one read: parsed here, without read tasks or timers.
      if (!reader.parse_buffered()) {
        if (!reader.parser().headers_complete())
          co_await reader.read_headers(s, after(opts_.header_timeout), "reading the request headers");
        co_await reader.read_message(s, after(opts_.body_timeout), "reading the request body");
      }
      in_flight = true;
      ++stats_.requests_in_flight;
      request& req = reader.parser().request_message();
      const bool keep = reader.parser().keep_alive();
      response resp;
      bool handler_failed = false;
      try {
        resp = co_await handler_(req);
      } catch (const cancelled_error&) {
        throw;
      } catch (...) {
        handler_failed = true;
      }
      if (handler_failed) {
        ++stats_.handler_failures;
        resp = response{};
        resp.status = 500;
        resp.body = "internal server error\n";
      }
      const bool close = !keep || stopping_;
      if (close) resp.headers.set("Connection", "close");
      // (Named: the wire text outlives the write.)
      const std::string wire = serialize(resp, req.method == "HEAD");
      const std::size_t sent = s.try_write(wire);
      if (sent < wire.size()) co_await s.write_all(std::string_view(wire).substr(sent));
      --stats_.requests_in_flight;
      in_flight = false;
      ++stats_.requests;
      if (close) break;
      reader.next();
    }
  } catch (...) {
    failure = std::current_exception();
  }
  if (in_flight) --stats_.requests_in_flight;
  if (failure) {
    if (auto answer = error_response(failure)) {
      ++stats_.bad_requests;
      answer->headers.set("Connection", "close");
      // Best effort, briefly: the client may be gone or not reading.
      try {
        co_await move_on_after(std::chrono::seconds(1), s.write_all(serialize(*answer)));
      } catch (...) {
      }
    }
  }
  s.close();
  connection_ended(c.get());
}

}  // namespace spindle::http
