#include "spindle/http/connection.hpp"

#include <sys/socket.h>

#include <cerrno>

#include "spindle/cancel_scope.hpp"
#include "spindle/event_loop.hpp"

namespace spindle::http {

// ---- stream -------------------------------------------------------------------

// Not coroutines: the transport's task is returned as is (one frame less
// per read and write).
namespace {
task<std::size_t> read_closed() {
  throw net::connection_error("read on a closed connection");
  co_return 0;
}
task<void> write_closed() {
  throw net::connection_error("write on a closed connection");
  co_return;
}
}  // namespace

task<std::size_t> stream::read_some(std::span<char> buffer) {
  if (auto* t = std::get_if<net::tcp_stream>(&s_)) return t->read_some(buffer);
  if (auto* t = std::get_if<net::tls_stream>(&s_)) return t->read_some(buffer);
  return read_closed();
}

task<void> stream::write_all(std::string_view data) {
  if (auto* t = std::get_if<net::tcp_stream>(&s_)) return t->write_all(data);
  if (auto* t = std::get_if<net::tls_stream>(&s_)) return t->write_all(data);
  return write_closed();
}

std::size_t stream::try_write(std::string_view data) {
  if (auto* t = std::get_if<net::tcp_stream>(&s_)) return t->try_write(data);
  return 0;
}

void stream::close() noexcept {
  if (auto* t = std::get_if<net::tcp_stream>(&s_)) t->close();
  if (auto* l = std::get_if<net::tls_stream>(&s_)) l->close();
  s_ = std::monostate{};
}

void stream::shutdown_write() noexcept {
  if (auto* t = std::get_if<net::tcp_stream>(&s_)) t->shutdown_write();
}

void stream::reset() noexcept {
  if (auto* t = std::get_if<net::tcp_stream>(&s_)) t->reset();
  if (auto* l = std::get_if<net::tls_stream>(&s_)) l->transport().reset();
  close();
}

bool stream::is_open() const noexcept {
  if (auto* t = std::get_if<net::tcp_stream>(&s_)) return t->is_open();
  if (auto* l = std::get_if<net::tls_stream>(&s_)) return l->is_open();
  return false;
}

const net::tcp_stream* stream::tcp() const noexcept {
  if (auto* t = std::get_if<net::tcp_stream>(&s_)) return t;
  if (auto* l = std::get_if<net::tls_stream>(&s_)) return &const_cast<net::tls_stream*>(l)->transport();
  return nullptr;
}

bool stream::stale() const noexcept {
  const net::tcp_stream* t = tcp();
  if (t == nullptr || !t->is_open()) return true;
  if (!t->maybe_readable()) return false;  // drained, and nothing (not even a FIN) since
  char byte;
  const ssize_t n = ::recv(t->native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return true;                                              // the peer closed
  if (n > 0) return true;                                               // unsolicited bytes (or a TLS alert)
  return !(errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);  // an error is pending
}

net::socket_address stream::peer_address() const {
  const net::tcp_stream* t = tcp();
  return t != nullptr ? t->peer_address() : net::socket_address{};
}

// ---- message_reader -----------------------------------------------------------

task<void> message_reader::read_message(stream& s, time_point deadline, const char* phase) {
  co_await read_until(s, deadline, phase, false);
}

task<void> message_reader::read_headers(stream& s, time_point deadline, const char* phase) {
  co_await read_until(s, deadline, phase, true);
}

std::span<char> message_reader::read_space() {
  constexpr std::size_t initial = 8 * 1024, largest = 64 * 1024;
  if (!buf_) {
    buf_.reset(new char[initial]);
    size_ = initial;
  } else if (last_read_full_ && size_ < largest) {
    // The last read filled the buffer (its bytes are parsed by now): a
    // large body is coming, read it in bigger pieces.
    size_ *= 2;
    buf_.reset(new char[size_]);
  }
  begin_ = end_ = 0;
  return {buf_.get(), size_};
}

bool message_reader::parse_buffered(bool headers_only) {
  if (begin_ < end_ && !parser_.complete())
    consume(parser_.feed(std::span<const char>(buf_.get() + begin_, end_ - begin_)));
  return headers_only ? parser_.headers_complete() : parser_.complete();
}

task<bool> message_reader::wait_for_data(stream& s, time_point deadline) {
  if (begin_ < end_) co_return true;
  const std::span<char> space = read_space();
  std::size_t n = 0;
  if (deadline == time_point::max()) {
    n = co_await s.read_some(space);
  } else {
    auto got = co_await move_on_at(deadline, s.read_some(space));
    if (!got) co_return false;
    n = *got;
  }
  end_ = n;
  last_read_full_ = n == space.size();
  co_return n != 0;
}

task<void> message_reader::read_until(stream& s, time_point deadline, const char* phase, bool headers_only) {
  // Whatever parse_buffered() leaves unparsed is the next message's: a read
  // happens only once the buffer is empty.
  while (!parse_buffered(headers_only)) {
    const std::span<char> space = read_space();
    std::size_t n = 0;
    if (deadline == time_point::max()) {
      n = co_await s.read_some(space);
    } else {
      auto got = co_await move_on_at(deadline, s.read_some(space));
      if (!got) {
        throw timeout_error(std::string(phase) + " timed out" +
                            (parser_.idle()               ? ""
                             : parser_.headers_complete() ? " in the body"
                                                          : " in the headers"));
      }
      n = *got;
    }
    took(n, space.size());
    if (n == 0) co_return;
  }
}

void message_reader::took(std::size_t n, std::size_t space) {
  if (n == 0) {
    if (parser_.idle()) throw end_of_stream("the peer closed the connection");
    parser_.finish();  // completes a close-delimited body, or throws protocol_error
    return;
  }
  end_ = n;
  last_read_full_ = n == space;
}

task<void> message_reader::read_more(stream& s) {
  if (begin_ == end_ && !parser_.complete()) {
    const std::span<char> space = read_space();
    const std::size_t n = co_await s.read_some(space);
    took(n, space.size());
  }
  parse_buffered();
}

// ---- serialisation ------------------------------------------------------------

using namespace std::string_view_literals;  // (appending literals without strlen)

namespace {
void append_headers(std::string& out, const headers& h, bool add_length, std::size_t length,
                    std::string_view extra_fields = {}) {
  for (const auto& [name, value] : h) {
    out += name;
    out += ": "sv;
    out += value;
    out += "\r\n"sv;
  }
  if (add_length) {
    out += "Content-Length: "sv;
    out += std::to_string(length);
    out += "\r\n"sv;
  }
  out += extra_fields;
  out += "\r\n"sv;
}
}  // namespace

std::string serialize(const request& r, std::string_view host_header) {
  std::string out;
  serialize_to(out, r, host_header);
  return out;
}

void serialize_to(std::string& out, const request& r, std::string_view host_header,
                  std::string_view extra_fields) {
  out.reserve(out.size() + 256 + r.body.size());
  out += r.method;
  out += ' ';
  out += r.target;
  out += r.version_minor == 0 ? " HTTP/1.0\r\n"sv : " HTTP/1.1\r\n"sv;
  if (!r.headers.contains("Host")) {
    out += "Host: "sv;
    out += host_header;
    out += "\r\n"sv;
  }
  const bool body_method = r.method == "POST" || r.method == "PUT" || r.method == "PATCH";
  const bool add_length = (!r.body.empty() || body_method) && !r.headers.contains("Content-Length") &&
                          !r.headers.contains("Transfer-Encoding");
  append_headers(out, r.headers, add_length, r.body.size(), extra_fields);
  out += r.body;
}

std::string serialize(const response& r, bool head_request) {
  std::string out;
  out.reserve(128 + r.body.size());
  out += r.version_minor == 0 ? "HTTP/1.0 "sv : "HTTP/1.1 "sv;
  out += std::to_string(r.status);
  out += ' ';
  out += r.reason.empty() ? std::string(reason_phrase(r.status)) : r.reason;
  out += "\r\n"sv;
  const bool no_body_status = r.status == 204 || r.status == 304 || (r.status >= 100 && r.status < 200);
  const bool add_length =
      !no_body_status && !r.headers.contains("Content-Length") && !r.headers.contains("Transfer-Encoding");
  append_headers(out, r.headers, add_length, r.body.size());
  if (!head_request && !no_body_status) out += r.body;
  return out;
}

}  // namespace spindle::http
