#pragma once
/// \file
/// The byte stream under HTTP (plain TCP or TLS), a buffered message reader
/// on it, and message serialisation. Shared by the client and the server.

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <variant>

#include "spindle/clock.hpp"
#include "spindle/http/decoder.hpp"  // decode_content(), declared here before
#include "spindle/http/message.hpp"
#include "spindle/http/parser.hpp"
#include "spindle/net/tcp.hpp"
#include "spindle/net/tls.hpp"
#include "spindle/task.hpp"

namespace spindle::http {

/// A connection's byte stream: TCP or TLS.
class stream {
 public:
  stream() noexcept = default;
  explicit stream(net::tcp_stream s) : s_(std::move(s)) {}
  explicit stream(net::tls_stream s) : s_(std::move(s)) {}

  task<std::size_t> read_some(std::span<char> buffer);
  task<void> write_all(std::string_view data);
  /// Writes what the connection takes now, without waiting: the bytes
  /// written (0 for TLS, which always goes through write_all). Throws
  /// connection_error.
  std::size_t try_write(std::string_view data);
  void close() noexcept;
  /// Sends a FIN and keeps reading (TCP; nothing for TLS, whose peer is
  /// told by Connection: close).
  void shutdown_write() noexcept;
  /// Closes with an RST (a connection in an unknown state).
  void reset() noexcept;
  [[nodiscard]] bool is_open() const noexcept;
  /// True if the peer closed or sent something while we were not reading
  /// (a pooled connection that must not be reused). Never blocks.
  [[nodiscard]] bool stale() const noexcept;
  [[nodiscard]] net::socket_address peer_address() const;

 private:
  [[nodiscard]] const net::tcp_stream* tcp() const noexcept;
  std::variant<std::monostate, net::tcp_stream, net::tls_stream> s_;
};

/// Reads messages from a stream through a parser, keeping bytes that
/// belong to the next message (pipelining). Reads go straight into the
/// reader's own buffer (8 KiB, grown to 64 KiB while reads fill it), and
/// only when it is empty: the parser consumes every byte of a read unless a
/// message ends inside it.
class message_reader {
 public:
  explicit message_reader(message_parser::kind k, parse_limits limits = {}) : parser_(k, limits) {}

  /// Reads one whole message (parser().complete() afterwards). Each read
  /// waits at most until `deadline` (on the loop's clock; max: none) and
  /// throws timeout_error naming `phase` when it passes. Throws
  /// protocol_error, connection_error, and end_of_stream when the peer
  /// closed before the first byte of a message.
  task<void> read_message(stream& s, time_point deadline, const char* phase);
  /// Waits until at least one byte of a next message is here (or already
  /// buffered). False when the peer closed cleanly or `deadline` passed
  /// first (an idle keep-alive connection).
  task<bool> wait_for_data(stream& s, time_point deadline);
  /// Only up to the end of the headers (the body is read by read_message).
  task<void> read_headers(stream& s, time_point deadline, const char* phase);
  /// For a caller that takes the body as it arrives: parses what is
  /// buffered, or else reads once (without a deadline of its own) and
  /// parses that. The peer's close completes a close-delimited body or
  /// throws protocol_error (end_of_stream before the first byte).
  task<void> read_more(stream& s);
  /// Parses what is buffered, without I/O: true if the message (or, with
  /// `headers_only`, its headers) is complete. The usual small message
  /// arrives in one read, and then needs neither read_headers nor
  /// read_message. Throws protocol_error.
  bool parse_buffered(bool headers_only = false);

  [[nodiscard]] message_parser& parser() noexcept { return parser_; }
  /// Bytes received past the end of the last message.
  [[nodiscard]] bool has_leftover() const noexcept { return begin_ < end_; }
  /// Ready for the next message (keeps the leftover bytes).
  void next() { parser_.reset(); }

 private:
  task<void> read_until(stream& s, time_point deadline, const char* phase, bool headers_only);
  /// Takes a read of `n` bytes into read_space()'s buffer; at the end of
  /// the stream (0), finishes the message or throws.
  void took(std::size_t n, std::size_t space);
  /// The empty buffer, ready for a read (allocated, or grown after a read
  /// that filled it).
  std::span<char> read_space();
  void consume(std::size_t n) noexcept {
    begin_ += n;
    if (begin_ == end_) begin_ = end_ = 0;
  }
  message_parser parser_;
  std::unique_ptr<char[]> buf_;
  std::size_t size_ = 0;             // of buf_
  std::size_t begin_ = 0, end_ = 0;  // the unparsed bytes
  bool last_read_full_ = false;
};

/// The peer closed the connection cleanly between messages.
SPINDLE_DEFINE_ERROR(end_of_stream, connect);

/// "GET /path HTTP/1.1\r\nHost: ...\r\n...\r\n\r\nbody", with Content-Length
/// when there is a body (or the method expects one).
[[nodiscard]] std::string serialize(const request& r, std::string_view host_header);
/// As serialize(), appended to `out` (a buffer kept across requests), with
/// `extra_fields` (whole "Name: value\r\n" lines, written as they are)
/// after the request's own fields.
void serialize_to(std::string& out, const request& r, std::string_view host_header,
                  std::string_view extra_fields = {});
/// "HTTP/1.1 200 OK\r\n...Content-Length: n\r\n\r\nbody".
[[nodiscard]] std::string serialize(const response& r, bool head_request = false);

}  // namespace spindle::http
