// message_parser on llhttp (Debian's node-llhttp sources).

#include "spindle/http/parser.hpp"

#include <llhttp.h>

#include <algorithm>
#include <cstring>

namespace spindle::http {

struct message_parser::state {
  llhttp_t parser{};
  llhttp_settings_t settings{};
  kind what;
  parse_limits limits;
  bool no_body = false;
  bool started = false;
  bool headers_done = false;
  bool done = false;
  bool framing_ignored = false;  // a bodiless status with Content-Length or Transfer-Encoding
  std::size_t header_bytes = 0;
  std::uint64_t body_bytes = 0;
  std::string error;                // our own reason for an HPE_USER stop
  headers::field* field = nullptr;  // the field being received (in req or resp's headers)
  bool in_name = false;
  request req;
  response resp;

  static state& of(llhttp_t* p) { return *static_cast<state*>(p->data); }

  int count_header(std::size_t n) {
    header_bytes += n;
    if (header_bytes > limits.max_header_bytes) {
      error = "headers exceed " + std::to_string(limits.max_header_bytes) + " bytes";
      return -1;
    }
    return 0;
  }
  headers& fields() { return what == kind::request ? req.headers : resp.headers; }
  int too_large(std::uint64_t declared, const char* by) {
    error = "body exceeds " + std::to_string(limits.max_body_bytes) + " bytes (" + by + " announces " +
            std::to_string(declared) + ")";
    return -1;
  }

  void install() {
    llhttp_settings_init(&settings);
    settings.on_message_begin = [](llhttp_t* p) {
      state::of(p).started = true;
      return 0;
    };
    settings.on_url = [](llhttp_t* p, const char* at, size_t n) {
      state& s = of(p);
      s.req.target.append(at, n);
      return s.count_header(n);
    };
    settings.on_status = [](llhttp_t* p, const char* at, size_t n) {
      state& s = of(p);
      s.resp.reason.append(at, n);
      return s.count_header(n);
    };
    settings.on_method = [](llhttp_t* p, const char* at, size_t n) {
      state& s = of(p);
      s.req.method.append(at, n);
      return s.count_header(n);
    };
    // A name or value may come in pieces (split across reads): each field
    // is appended once, at its name's first piece, and filled in place.
    settings.on_header_field = [](llhttp_t* p, const char* at, size_t n) {
      state& s = of(p);
      if (!s.in_name) {
        s.field = &s.fields().add_empty();
        s.in_name = true;
      }
      s.field->first.append(at, n);
      return s.count_header(n);
    };
    settings.on_header_field_complete = [](llhttp_t* p) {
      of(p).in_name = false;
      return 0;
    };
    settings.on_header_value = [](llhttp_t* p, const char* at, size_t n) {
      state& s = of(p);
      if (s.field == nullptr) s.field = &s.fields().add_empty();  // (llhttp always sends a name first)
      s.field->second.append(at, n);
      return s.count_header(n);
    };
    settings.on_headers_complete = [](llhttp_t* p) {
      state& s = of(p);
      s.headers_done = true;
      if (s.what == kind::request) {
        s.req.version_minor = llhttp_get_http_minor(p);
      } else {
        s.resp.status = llhttp_get_status_code(p);
        s.resp.version_minor = llhttp_get_http_minor(p);
        // llhttp 8 takes "HTTP/1.1 30" as status 30; RFC 9110 wants three digits.
        if (s.resp.status < 100 || s.resp.status > 999) {
          s.error = "invalid status code " + std::to_string(s.resp.status);
          return -1;
        }
        // RFC 9112 §6.3: 1xx, 204 and 304 never have a body, whatever
        // their framing fields say (llhttp 8 reads a 204's Content-Length).
        const int st = s.resp.status;
        if (st < 200 || st == 204 || st == 304) {
          // (A 304's Content-Length is legal: the length a 200 would have.)
          s.framing_ignored = (p->flags & (F_CHUNKED | F_TRANSFER_ENCODING)) != 0 ||
                              (st != 304 && (p->flags & F_CONTENT_LENGTH) != 0 && p->content_length > 0);
          return 1;
        }
      }
      if (s.no_body) return 1;
      // A declared length over the limit fails now, not after the bytes.
      if ((p->flags & F_CONTENT_LENGTH) != 0 && (p->flags & F_CHUNKED) == 0 &&
          p->content_length > s.limits.max_body_bytes)
        return s.too_large(p->content_length, "Content-Length");
      return 0;
    };
    settings.on_chunk_header = [](llhttp_t* p) {
      state& s = of(p);
      if (p->content_length > s.limits.max_body_bytes - std::min(s.body_bytes, s.limits.max_body_bytes))
        return s.too_large(s.body_bytes + p->content_length, "a chunk size");
      return 0;
    };
    settings.on_body = [](llhttp_t* p, const char* at, size_t n) {
      state& s = of(p);
      s.body_bytes += n;
      if (s.body_bytes > s.limits.max_body_bytes) {
        s.error = "body exceeds " + std::to_string(s.limits.max_body_bytes) + " bytes";
        return -1;
      }
      if (s.limits.keep_body) (s.what == kind::request ? s.req.body : s.resp.body).append(at, n);
      return 0;
    };
    settings.on_message_complete = [](llhttp_t* p) {
      state& s = of(p);
      s.done = true;
      s.resp.wire_body_bytes = s.body_bytes;
      return static_cast<int>(HPE_PAUSED);  // one message at a time
    };
  }

  void init() {
    req = request{};
    req.method.clear();  // filled by on_method / on_url
    req.target.clear();
    resp = response{};
    fields().reserve(8);  // one allocation for the usual handful of fields
    field = nullptr;
    in_name = false;
    llhttp_init(&parser, what == kind::request ? HTTP_REQUEST : HTTP_RESPONSE, &settings);
    parser.data = this;
  }

  [[noreturn]] void fail(llhttp_errno_t err) {
    std::string why = !error.empty()                                ? error
                      : llhttp_get_error_reason(&parser) != nullptr ? llhttp_get_error_reason(&parser)
                                                                    : llhttp_errno_name(err);
    throw protocol_error("malformed HTTP " + std::string(what == kind::request ? "request" : "response") +
                         ": " + why);
  }
};

message_parser::message_parser(kind k, parse_limits limits) : s_(std::make_unique<state>()) {
  s_->what = k;
  s_->limits = limits;
  s_->install();
  s_->init();
}

message_parser::~message_parser() = default;
message_parser::message_parser(message_parser&&) noexcept = default;
message_parser& message_parser::operator=(message_parser&&) noexcept = default;

void message_parser::set_no_body(bool no_body) noexcept { s_->no_body = no_body; }

void message_parser::set_limits(parse_limits limits) noexcept { s_->limits = limits; }

std::size_t message_parser::feed(std::span<const char> data) {
  state& s = *s_;
  if (s.done) return 0;
  if (data.empty()) return 0;
  const llhttp_errno_t err = llhttp_execute(&s.parser, data.data(), data.size());
  if (err == HPE_OK) return data.size();
  if (err == HPE_PAUSED && s.done) {
    const char* stop = llhttp_get_error_pos(&s.parser);
    return stop != nullptr ? static_cast<std::size_t>(stop - data.data()) : data.size();
  }
  s.fail(err);
}

void message_parser::finish() {
  state& s = *s_;
  if (s.done) return;
  if (!s.started) throw protocol_error("connection closed before a response started");
  const llhttp_errno_t err = llhttp_finish(&s.parser);
  if (err == HPE_OK && s.done) return;
  if (err == HPE_OK || err == HPE_PAUSED) {
    if (s.done) return;
  }
  if (!s.headers_done) throw protocol_error("connection closed in the middle of the headers");
  throw protocol_error("connection closed before the body was complete (" + std::to_string(s.body_bytes) +
                       " bytes received)");
}

void message_parser::reset() {
  state& s = *s_;
  s.started = s.headers_done = s.done = s.framing_ignored = false;
  s.header_bytes = 0;
  s.body_bytes = 0;
  s.error.clear();
  s.no_body = false;
  s.init();
}

bool message_parser::headers_complete() const noexcept { return s_->headers_done; }
bool message_parser::complete() const noexcept { return s_->done; }
bool message_parser::idle() const noexcept { return !s_->started; }
bool message_parser::keep_alive() const noexcept { return llhttp_should_keep_alive(&s_->parser) != 0; }
bool message_parser::framing_ignored() const noexcept { return s_->framing_ignored; }
bool message_parser::close_delimited() const noexcept { return llhttp_message_needs_eof(&s_->parser) != 0; }
request& message_parser::request_message() noexcept { return s_->req; }
response& message_parser::response_message() noexcept { return s_->resp; }

}  // namespace spindle::http
