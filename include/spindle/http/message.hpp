#pragma once
/// \file
/// HTTP/1.1 messages: headers, request, response.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "spindle/task.hpp"

namespace spindle::http {

class body_reader;
class body_writer;

/// Header fields in order, names compared case-insensitively.
class headers {
 public:
  using field = std::pair<std::string, std::string>;
  headers() = default;
  headers(std::initializer_list<field> fields) : fields_(fields) {}

  /// Appends (a repeated name keeps every value).
  void add(std::string name, std::string value) { fields_.emplace_back(std::move(name), std::move(value)); }
  /// Appends an empty field and returns it, for a parser that fills the
  /// name and value in place as their bytes arrive.
  field& add_empty() { return fields_.emplace_back(); }
  void reserve(std::size_t n) { fields_.reserve(n); }
  /// Replaces every field of that name with one (appended last); returns
  /// its stored value.
  const std::string& set(std::string_view name, std::string value);
  void remove(std::string_view name);
  /// The first value of `name`.
  [[nodiscard]] std::optional<std::string_view> get(std::string_view name) const;
  [[nodiscard]] std::vector<std::string_view> get_all(std::string_view name) const;
  [[nodiscard]] bool contains(std::string_view name) const { return get(name).has_value(); }
  /// True if a comma-separated field of that name lists `token` (case-insensitive):
  /// has_token("Connection", "close").
  [[nodiscard]] bool has_token(std::string_view name, std::string_view token) const;

  [[nodiscard]] std::size_t size() const noexcept { return fields_.size(); }
  [[nodiscard]] bool empty() const noexcept { return fields_.empty(); }
  [[nodiscard]] auto begin() const noexcept { return fields_.begin(); }
  [[nodiscard]] auto end() const noexcept { return fields_.end(); }
  void clear() noexcept { fields_.clear(); }

 private:
  std::vector<field> fields_;
};

/// ASCII case-insensitive equality (header names, tokens).
[[nodiscard]] bool iequals(std::string_view a, std::string_view b) noexcept;

/// The next element of a comma-separated field value (RFC 9110 §5.6.1),
/// without surrounding spaces and tabs (empty for "a, , b"'s middle), and
/// `rest` advanced past it: `for (auto rest = v; !rest.empty();) { auto e =
/// next_list_element(rest); ... }`.
[[nodiscard]] std::string_view next_list_element(std::string_view& rest) noexcept;

// (message_parser resets a request member by member: a new member needs a
// line in its state::init().)
struct request {
  std::string method = "GET";
  /// origin-form: path and query. (A server turns an absolute-form target,
  /// "http://host/p?q", into "/p?q" and puts "host" in `authority`.)
  std::string target = "/";
  http::headers headers;
  std::string body;
  int version_minor = 1;  ///< HTTP/1.x
  /// Server side: the authority the request is for, from an absolute-form
  /// target or else the Host field (RFC 9112 §3.2.2); empty for an
  /// HTTP/1.0 request without Host.
  std::string authority;
  /// Server side, for requests the server streams (server_options::
  /// stream_body): the body as it arrives, valid during the handler; `body`
  /// stays empty. Null otherwise.
  body_reader* body_stream = nullptr;
};

struct response {
  int status = 0;
  std::string reason;
  http::headers headers;
  std::string body;
  int version_minor = 1;
  /// The body's size on the wire (before decoding), counted even when the
  /// body was not kept.
  std::uint64_t wire_body_bytes = 0;
  /// The URL this response came from: the request's, or the last
  /// redirect's target (http::client fills it in; no userinfo).
  std::string url;
  /// Redirects followed to get here (http::client).
  unsigned redirects = 0;
  /// Server side: when set, the body is written by this function after the
  /// head, piece by piece, instead of `body`. Without a Content-Length field
  /// it is sent chunked (to an HTTP/1.0 client: until the connection
  /// closes); with one, exactly that many bytes must be written. Not called
  /// for HEAD requests or 1xx/204/304.
  std::function<task<void>(body_writer&)> body_producer;

  [[nodiscard]] bool ok() const noexcept { return status >= 200 && status < 300; }
};

/// The standard reason phrase for a status ("Not Found"), or "".
[[nodiscard]] std::string_view reason_phrase(int status) noexcept;

}  // namespace spindle::http
