#pragma once
/// \file
/// message_parser: incremental HTTP/1.x parsing of requests or responses
/// with llhttp, with limits on header and body size.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "spindle/http/errors.hpp"
#include "spindle/http/message.hpp"

namespace spindle::http {

struct parse_limits {
  /// The whole head: start line, header fields, separators, whitespace and
  /// line ends, in bytes (431 / protocol_error beyond). Trailer fields of a
  /// chunked body have a budget of the same size.
  std::size_t max_header_bytes = 64 * 1024;
  /// Header fields (and, separately, trailer fields), counted as lines.
  /// The server keeps this default; the client lifts it (a response head
  /// is bounded by max_header_bytes alone, as curl's is).
  std::size_t max_header_fields = 100;
  /// The body as received (before any decoding).
  std::uint64_t max_body_bytes = 64ull * 1024 * 1024;
  /// Keep the body (false: count its bytes only).
  bool keep_body = true;
};

/// Why the last feed() or finish() threw (a server maps it to a status).
enum class parse_failure : std::uint8_t {
  none,
  malformed,              ///< 400
  head_too_large,         ///< over max_header_bytes: 431
  too_many_fields,        ///< over max_header_fields: 431
  body_too_large,         ///< over max_body_bytes, declared or received: 413
  version_not_supported,  ///< a well-formed request line of another major version: 505
};

/// Parses one message at a time from a byte stream. After complete(),
/// take the message, call reset() and feed the bytes feed() did not consume
/// (pipelined requests, or a server's junk after a response).
///
/// Requests: the request line is checked before llhttp sees it, so that a
/// well-formed method llhttp does not know ("QUERY", "FOO") is parsed (its
/// name is kept), "HTTP/1.2" is read as HTTP/1.1 (RFC 9110 §2.5), and
/// another major version ("HTTP/2.0", "HTTP/0.9") fails as
/// version_not_supported rather than as malformed. Empty lines before a
/// request line are skipped (RFC 9112 §2.2) but count as head bytes.
///
/// **Thread safety:** one thread.
class message_parser {
 public:
  enum class kind : std::uint8_t { request, response };
  explicit message_parser(kind k, parse_limits limits = {});
  ~message_parser();
  message_parser(message_parser&&) noexcept;
  message_parser& operator=(message_parser&&) noexcept;
  message_parser(const message_parser&) = delete;
  message_parser& operator=(const message_parser&) = delete;

  /// For a response to HEAD: no body. (1xx, 204 and 304 responses never
  /// have one; the parser knows.)
  void set_no_body(bool no_body) noexcept;
  /// New limits for the next message (between messages: after reset() or
  /// construction). A kept-alive connection's parser is reused this way
  /// instead of being rebuilt per request.
  void set_limits(parse_limits limits) noexcept;
  /// Parses `data`; returns the bytes consumed (all of them unless a
  /// message completed inside). Throws protocol_error with llhttp's reason
  /// ("Invalid header value char", "Response overflow (content-length)", ...).
  std::size_t feed(std::span<const char> data);
  /// The peer closed the connection: completes a close-delimited body, or
  /// throws protocol_error when the message was cut short.
  void finish();
  void reset();

  [[nodiscard]] bool headers_complete() const noexcept;
  [[nodiscard]] bool complete() const noexcept;
  /// True when nothing of a message has been received yet.
  [[nodiscard]] bool idle() const noexcept;
  /// The connection may carry another message after this one.
  [[nodiscard]] bool keep_alive() const noexcept;
  /// The body runs until the connection closes (no length, not chunked).
  [[nodiscard]] bool close_delimited() const noexcept;
  /// A 1xx or 204 response carried Content-Length (not 0), or a 1xx, 204
  /// or 304 one Transfer-Encoding: it was read without a body, as RFC 9112
  /// §6.3 says, but whatever the server meant by them may follow on the
  /// connection. (A 304's Content-Length is legal: RFC 9110 §8.6.)
  [[nodiscard]] bool framing_ignored() const noexcept;
  /// The request was CONNECT or asked to upgrade (Connection: upgrade):
  /// parsing stopped after it, and the connection cannot carry another
  /// HTTP/1 request unless the upgrade is accepted.
  [[nodiscard]] bool upgrade() const noexcept;
  /// Body bytes received (as sent: before any decoding) of this message.
  [[nodiscard]] std::uint64_t body_bytes() const noexcept;
  /// Why the parser threw (none if it did not).
  [[nodiscard]] parse_failure failure() const noexcept;

  /// The parsed message (valid once headers_complete(); the body once complete()).
  [[nodiscard]] request& request_message() noexcept;
  [[nodiscard]] response& response_message() noexcept;

  struct state;

 private:
  std::unique_ptr<state> s_;
};

}  // namespace spindle::http
