// message_parser on llhttp (Debian's node-llhttp sources).

#include "spindle/http/parser.hpp"

#include <llhttp.h>

#include <algorithm>
#include <array>
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
  bool upgrade = false;          // CONNECT or Upgrade: parsing stopped after the message
  parse_failure failure = parse_failure::none;
  std::size_t head_bytes = 0;     // of the head so far (every byte)
  std::size_t trailer_bytes = 0;  // names and values of trailer fields
  std::size_t field_count = 0;    // header fields, then trailer fields
  std::uint64_t body_bytes = 0;
  // Requests: the request line, checked before llhttp sees it.
  bool line_done = false;
  std::string line;                 // its first bytes, when it arrived in pieces
  std::string method;               // a method llhttp does not know (it parses "GET" instead)
  std::string error;                // our own reason for an HPE_USER stop
  headers::field* field = nullptr;  // the field being received (in req or resp's headers)
  bool in_name = false;
  request req;
  response resp;

  static state& of(llhttp_t* p) { return *static_cast<state*>(p->data); }

  int head_too_large() {
    failure = parse_failure::head_too_large;
    error = "headers exceed " + std::to_string(limits.max_header_bytes) + " bytes";
    return -1;
  }
  // Trailer fields (after the last chunk) are counted, then dropped: RFC
  // 9110 §6.5.1 forbids merging them into the header section.
  int count_trailer(std::size_t n) {
    trailer_bytes += n;
    if (trailer_bytes > limits.max_header_bytes) {
      failure = parse_failure::head_too_large;
      error = "trailer fields exceed " + std::to_string(limits.max_header_bytes) + " bytes";
      return -1;
    }
    return 0;
  }
  int new_field() {
    if (++field_count > limits.max_header_fields) {
      failure = parse_failure::too_many_fields;
      error = std::string(headers_done ? "trailer" : "header") + " fields exceed " +
              std::to_string(limits.max_header_fields);
      return -1;
    }
    return 0;
  }
  headers& fields() { return what == kind::request ? req.headers : resp.headers; }
  int too_large(std::uint64_t declared, const char* by) {
    failure = parse_failure::body_too_large;
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
    // (Head bytes are counted in feed(), every byte of them.)
    settings.on_url = [](llhttp_t* p, const char* at, size_t n) {
      of(p).req.target.append(at, n);
      return 0;
    };
    settings.on_status = [](llhttp_t* p, const char* at, size_t n) {
      of(p).resp.reason.append(at, n);
      return 0;
    };
    settings.on_method = [](llhttp_t* p, const char* at, size_t n) {
      of(p).req.method.append(at, n);
      return 0;
    };
    // A name or value may come in pieces (split across reads): each field
    // is appended once, at its name's first piece, and filled in place.
    // Trailer fields are only counted.
    settings.on_header_field = [](llhttp_t* p, const char* at, size_t n) {
      state& s = of(p);
      if (!s.in_name) {
        if (s.new_field() != 0) return -1;
        s.field = s.headers_done ? nullptr : &s.fields().add_empty();
        s.in_name = true;
      }
      if (s.headers_done) return s.count_trailer(n);
      s.field->first.append(at, n);
      return 0;
    };
    settings.on_header_field_complete = [](llhttp_t* p) {
      of(p).in_name = false;
      return 0;
    };
    settings.on_header_value = [](llhttp_t* p, const char* at, size_t n) {
      state& s = of(p);
      if (s.headers_done) return s.count_trailer(n);
      if (s.field == nullptr) s.field = &s.fields().add_empty();  // (llhttp always sends a name first)
      s.field->second.append(at, n);
      return 0;
    };
    settings.on_headers_complete = [](llhttp_t* p) {
      state& s = of(p);
      s.headers_done = true;
      s.field_count = 0;  // trailer fields have a budget of their own
      s.field = nullptr;
      s.in_name = false;
      if (s.what == kind::request) {
        s.req.version_minor = llhttp_get_http_minor(p);
        if (!s.method.empty()) s.req.method = std::move(s.method);
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
        s.failure = parse_failure::body_too_large;
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
    if (what == kind::request) {
      // Member by member, keeping the field vector's room (a server parses
      // request after request with this state). Keep in step with request.
      req.method.clear();  // filled by on_method / on_url
      req.target.clear();
      req.headers.clear();
      if (req.body.capacity() > 64 * 1024) {
        std::string().swap(req.body);  // a large body's room is not kept
      } else {
        req.body.clear();
      }
      req.version_minor = 1;
      req.authority.clear();
      req.body_stream = nullptr;
    } else {
      resp = response{};
    }
    fields().reserve(8);  // one allocation for the usual handful of fields
    field = nullptr;
    in_name = false;
    llhttp_init(&parser, what == kind::request ? HTTP_REQUEST : HTTP_RESPONSE, &settings);
    parser.data = this;
  }

  // llhttp_execute, one message at a time: the bytes consumed (all unless
  // the message completed inside), or throws.
  std::size_t execute(std::span<const char> data) {
    if (done || data.empty()) return 0;
    const llhttp_errno_t err = llhttp_execute(&parser, data.data(), data.size());
    if (err == HPE_OK) return data.size();
    if ((err == HPE_PAUSED && done) || err == HPE_PAUSED_UPGRADE) {
      // CONNECT or Upgrade: llhttp stops after the message (done by then).
      if (err == HPE_PAUSED_UPGRADE || parser.upgrade != 0) upgrade = done = true;
      const char* stop = llhttp_get_error_pos(&parser);
      return stop != nullptr ? static_cast<std::size_t>(stop - data.data()) : data.size();
    }
    fail(err);
  }

  // execute(), with every byte before the end of the headers counted
  // against max_header_bytes.
  std::size_t execute_counted(std::span<const char> data) {
    if (headers_done) return execute(data);
    const std::size_t room = limits.max_header_bytes - std::min(head_bytes, limits.max_header_bytes);
    if (data.size() <= room) {
      const std::size_t n = execute(data);
      if (!headers_done) head_bytes += n;
      return n;
    }
    const std::size_t n = execute(data.first(room));
    if (!headers_done) {
      head_too_large();
      fail(HPE_USER);
    }
    return done ? n : n + execute(data.subspan(room));
  }

  // Requests: the request line is checked, and rewritten for llhttp when
  // needed, before llhttp sees it. Returns the bytes consumed.
  std::size_t feed_request_line(std::span<const char> data) {
    std::size_t used = 0;
    if (line.empty()) {  // empty lines before a request (RFC 9112 §2.2)
      while (used < data.size() && (data[used] == '\r' || data[used] == '\n')) ++used;
      head_bytes += used;
      if (head_bytes > limits.max_header_bytes) {
        head_too_large();
        fail(HPE_USER);
      }
      data = data.subspan(used);
    }
    const std::size_t room =
        limits.max_header_bytes - std::min(head_bytes + line.size(), limits.max_header_bytes);
    const char* lf = static_cast<const char*>(std::memchr(data.data(), '\n', std::min(data.size(), room)));
    if (lf == nullptr) {
      if (data.size() >= room) {
        head_too_large();
        fail(HPE_USER);
      }
      line.append(data.data(), data.size());
      return used + data.size();
    }
    const std::size_t n = static_cast<std::size_t>(lf - data.data()) + 1;
    std::string_view whole;
    if (line.empty()) {
      whole = std::string_view(data.data(), n);
    } else {
      line.append(data.data(), n);
      whole = line;
    }
    std::string rewritten;
    check_request_line(whole, rewritten);
    line_done = true;
    // The usual case: the line arrived whole and llhttp takes it as it is.
    // It goes to llhttp with what follows (one execute, counted there).
    if (rewritten.empty() && line.empty()) return used;
    head_bytes += whole.size();
    const std::string_view fed = rewritten.empty() ? whole : std::string_view(rewritten);
    if (execute(std::span<const char>(fed.data(), fed.size())) != fed.size())
      fail(HPE_USER);  // (the line alone cannot complete a message)
    line.clear();
    return used + n;
  }

  // request-line = method SP request-target SP HTTP-version CRLF
  // (RFC 9112 §3). Malformed lines go to llhttp as they are, for its
  // reason; `rewritten` is set when llhttp must see another line.
  void check_request_line(std::string_view l, std::string& rewritten) {
    const std::size_t sp1 = l.find(' ');
    const std::size_t sp2 = l.rfind(' ');
    if (sp1 == std::string_view::npos || sp1 == 0 || sp2 == sp1) return;
    const std::string_view m = l.substr(0, sp1);
    const bool common = m == "GET" || m == "POST" || m == "HEAD" || m == "PUT";  // (skips the scans below)
    if (!common && !std::all_of(m.begin(), m.end(), is_tchar)) return;
    std::string_view version = l.substr(sp2 + 1);
    if (version.ends_with('\n')) version.remove_suffix(1);
    if (version.ends_with('\r')) version.remove_suffix(1);
    const bool well_formed = version.size() == 8 && version.starts_with("HTTP/") && is_digit(version[5]) &&
                             version[6] == '.' && is_digit(version[7]);
    if (!well_formed) return;
    if (version[5] != '1') {
      failure = parse_failure::version_not_supported;
      error = "HTTP version " + std::string(version.substr(5)) + " not supported";
      fail(HPE_USER);
    }
    const bool known = common || is_llhttp_method(m);
    if (known && version[7] <= '1') return;
    rewritten.reserve(l.size() + 3);
    if (known) {
      rewritten.append(l.substr(0, sp1));
    } else {
      method.assign(m);  // restored once the headers are complete
      rewritten.append("GET");
    }
    rewritten.append(l.substr(sp1, sp2 + 1 - sp1));
    rewritten.append(version[7] <= '1' ? version : std::string_view("HTTP/1.1"));  // 1.2 and on: 1.1
    rewritten.append("\r\n");
  }

  static bool is_digit(char c) { return c >= '0' && c <= '9'; }
  // RFC 9110 §5.6.2.
  static bool is_tchar(char c) { return tchars[static_cast<unsigned char>(c)]; }
  static constexpr std::array<bool, 256> tchars = [] {
    std::array<bool, 256> t{};
    for (int c = 0; c < 256; ++c)
      t[c] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
    return t;
  }();
  static bool is_llhttp_method(std::string_view m) {
    static constexpr std::string_view known[] = {
#define SPINDLE_LLHTTP_METHOD(num, name, string) #string,
        HTTP_METHOD_MAP(SPINDLE_LLHTTP_METHOD)
#undef SPINDLE_LLHTTP_METHOD
    };
    return std::find(std::begin(known), std::end(known), m) != std::end(known);
  }

  [[noreturn]] void fail(llhttp_errno_t err) {
    if (failure == parse_failure::none) failure = parse_failure::malformed;
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
  if (s.done || data.empty()) return 0;
  if (s.what == kind::request && !s.line_done) {
    const std::size_t n = s.feed_request_line(data);
    if (!s.line_done) return n;
    return n + s.execute_counted(data.subspan(n));
  }
  return s.execute_counted(data);
}

void message_parser::finish() {
  state& s = *s_;
  if (s.done) return;
  if (s.what == kind::request && !s.line.empty()) {
    s.failure = parse_failure::malformed;
    throw protocol_error("connection closed in the middle of the request line");
  }
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
  s.started = s.headers_done = s.done = s.framing_ignored = s.upgrade = s.line_done = false;
  s.failure = parse_failure::none;
  s.head_bytes = s.trailer_bytes = s.field_count = 0;
  s.line.clear();
  s.method.clear();
  s.body_bytes = 0;
  s.error.clear();
  s.no_body = false;
  s.init();
}

bool message_parser::headers_complete() const noexcept { return s_->headers_done; }
bool message_parser::complete() const noexcept { return s_->done; }
bool message_parser::idle() const noexcept {
  // (A request line arriving in pieces is held before llhttp sees it.)
  return !s_->started && s_->line.empty() && s_->head_bytes == 0;
}
bool message_parser::keep_alive() const noexcept { return llhttp_should_keep_alive(&s_->parser) != 0; }
bool message_parser::framing_ignored() const noexcept { return s_->framing_ignored; }
bool message_parser::upgrade() const noexcept { return s_->upgrade; }
parse_failure message_parser::failure() const noexcept { return s_->failure; }
std::uint64_t message_parser::body_bytes() const noexcept { return s_->body_bytes; }
bool message_parser::close_delimited() const noexcept { return llhttp_message_needs_eof(&s_->parser) != 0; }
request& message_parser::request_message() noexcept { return s_->req; }
response& message_parser::response_message() noexcept { return s_->resp; }

}  // namespace spindle::http
