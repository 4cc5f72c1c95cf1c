// Adversarial tests of http::server's request-protocol rules (issue #15):
// head and body limits, Expect: 100-continue, Host and absolute-form (RFC
// 9112 §3.2), versions and methods, pipelining, request smuggling, and
// streaming bodies both ways.
//
// Each test runs a background_server on 127.0.0.1 whose handler records
// every request that reaches it, and scripts every byte with raw_client
// from the test's thread. Every wait is bounded; no test asserts a speed.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "spindle/error.hpp"
#include "spindle/http/background_server.hpp"
#include "spindle/http/server.hpp"
#include "spindle/sleep.hpp"
#include "support/raw_client.hpp"

namespace spindle::http {
namespace {

using namespace std::chrono_literals;
using test::http_reply;
using test::raw_client;

// The bound of every read: never reached when the server behaves.
constexpr std::chrono::milliseconds wait = 10s;

// What a handler saw of one request.
struct seen_request {
  std::string method;
  std::string target;
  std::string authority;
  std::string body;  // the buffered body (streamed bodies are echoed instead)
  int version_minor = 1;
  http::headers headers;
};

// usage_errors the /overrun producer saw (one test at a time uses it).
std::atomic<int> overrun_usage_errors{0};

// Writes `pieces` one write() each.
task<void> produce(body_writer& w, std::vector<std::string> pieces) {
  for (const std::string& p : pieces) co_await w.write(p);
}

// 1,024 writes of 64 KiB, each of one letter ('a' + i % 26): 64 MiB in order.
constexpr std::size_t large_piece = 64 * 1024;
constexpr std::size_t large_pieces = 1024;

task<void> produce_large(body_writer& w) {
  std::string piece(large_piece, 'a');
  for (std::size_t i = 0; i < large_pieces; ++i) {
    piece.assign(large_piece, static_cast<char>('a' + i % 26));
    co_await w.write(piece);
  }
}

// Four bytes declared, five written: body_writer::write throws usage_error.
task<void> produce_too_much(body_writer& w) {
  try {
    co_await w.write("hello");
  } catch (const usage_error&) {
    ++overrun_usage_errors;
    throw;
  }
}

// The tests' routes. Unless a target says otherwise: 200 with the request's
// body (read from body_stream when streamed) and what the handler saw in
// X-Method, X-Target, X-Authority.
task<response> route(request& req) {
  response r;
  r.status = 200;
  r.headers.add("X-Method", req.method);
  r.headers.add("X-Target", req.target);
  r.headers.add("X-Authority", req.authority);
  const std::string& t = req.target;
  if (req.method == "CONNECT") {
    r.status = 501;  // no tunnels here; the test looks at what the handler saw
  } else if (t == "/forbid") {
    r.status = 403;  // without reading the body
    r.body = "forbidden";
  } else if (t == "/ignore") {
    r.status = 202;  // without reading the body
    r.body = "ignored";
  } else if (t == "/chunks") {
    std::vector<std::string> pieces{"alpha", "beta", "gamma"};
    r.body_producer = [pieces](body_writer& w) { return produce(w, pieces); };
  } else if (t == "/sized") {
    std::vector<std::string> pieces{"alpha", "beta", "gamma"};
    r.headers.add("Content-Length", "14");
    r.body_producer = [pieces](body_writer& w) { return produce(w, pieces); };
  } else if (t == "/large") {
    r.body_producer = [](body_writer& w) { return produce_large(w); };
  } else if (t == "/overrun") {
    r.headers.add("Content-Length", "4");
    r.body_producer = [](body_writer& w) { return produce_too_much(w); };
  } else {
    if (t.starts_with("/sleep/")) co_await sleep_for(std::chrono::milliseconds(std::stoi(t.substr(7))));
    if (req.body_stream != nullptr) {
      int pieces = 0;
      for (int i = 0; i < 1'000'000; ++i) {  // (bounded: the body is at most max_body_bytes)
        const std::string_view piece = co_await req.body_stream->read();
        if (piece.empty()) break;
        r.body += piece;
        ++pieces;
      }
      r.headers.add("X-Pieces", std::to_string(pieces));
    } else {
      r.body = req.body;
    }
  }
  co_return r;
}

// A server on 127.0.0.1 (its own loop and thread) serving route() and
// recording what reached the handler. Stopped gracefully when destroyed.
class proto_server {
 public:
  explicit proto_server(server_options so = {})
      : srv_([this](request& req) { return note_and_route(req); }, options(std::move(so))) {}

  [[nodiscard]] std::uint16_t port() const noexcept { return srv_.port(); }
  [[nodiscard]] raw_client connect() const { return raw_client::connect(port()); }
  [[nodiscard]] server_statistics stats() const { return srv_.statistics(); }
  [[nodiscard]] std::vector<seen_request> seen() const {
    std::lock_guard lock(m_);
    return seen_;
  }
  [[nodiscard]] std::vector<std::string> targets() const {
    std::vector<std::string> out;
    for (const seen_request& s : seen()) out.push_back(s.target);
    return out;
  }

 private:
  static background_server_options options(server_options so) {
    background_server_options o;
    o.name = "proto-server";
    o.server = std::move(so);
    return o;
  }
  task<response> note_and_route(request& req) {
    {
      std::lock_guard lock(m_);
      seen_.push_back(seen_request{.method = req.method,
                                   .target = req.target,
                                   .authority = req.authority,
                                   .body = req.body,
                                   .version_minor = req.version_minor,
                                   .headers = req.headers});
    }
    return route(req);
  }

  mutable std::mutex m_;
  std::vector<seen_request> seen_;
  background_server srv_;  // last: stopped before what its handler writes to goes
};

server_options streaming() {
  server_options o;
  o.stream_body = [](const request&) { return true; };
  return o;
}

// The server sent something or closed within `timeout` (nothing is read).
bool readable_within(const raw_client& c, std::chrono::milliseconds timeout) {
  pollfd p{c.fd(), POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(timeout.count())) > 0;
}

// The request text for a failure message: control bytes escaped, shortened.
std::string shown(std::string_view bytes) {
  std::string out;
  for (char ch : bytes.substr(0, 160)) {
    if (ch == '\r') {
      out += "\\r";
    } else if (ch == '\n') {
      out += "\\n";
    } else if (ch == '\0') {
      out += "\\0";
    } else {
      out += ch;
    }
  }
  if (bytes.size() > 160) out += "... (" + std::to_string(bytes.size()) + " bytes)";
  return out;
}

// Sends `bytes` on a new connection; expects `status` with Connection:
// close, then the server's close.
void expect_rejected(const proto_server& s, std::string_view bytes, int status) {
  SCOPED_TRACE(shown(bytes));
  raw_client c = s.connect();
  (void)c.send(bytes);  // (may fail: the server answers and closes early)
  const std::optional<http_reply> r = c.read_response(wait);
  ASSERT_TRUE(r) << "no response (eof " << c.eof() << ", reset " << c.reset() << ")";
  EXPECT_EQ(r->status, status) << r->body;
  EXPECT_EQ(r->header("Connection"), "close");
  EXPECT_TRUE(c.closed_by_peer(wait));
}

// Sends `bytes` on a new connection and reads one response.
std::optional<http_reply> ask(const proto_server& s, std::string_view bytes) {
  raw_client c = s.connect();
  EXPECT_TRUE(c.send(bytes));
  return c.read_response(wait);
}

std::string repeat(std::string_view s, std::size_t n) {
  std::string out;
  out.reserve(s.size() * n);
  for (std::size_t i = 0; i < n; ++i) out += s;
  return out;
}

// A GET whose head, `lead` (empty lines) included, is exactly `size` bytes
// through its final CRLF.
std::string head_of_size(std::size_t size, std::string_view lead = "") {
  std::string h = std::string(lead) + "GET /sized-head HTTP/1.1\r\nHost: x\r\nX-Pad: ";
  const std::size_t fixed = h.size() + 4;  // the pad's CRLF and the final one
  h.append(size - fixed, 'p');
  h += "\r\n\r\n";
  return h;
}

// A chunked body of `n` chunks of `size` bytes ('A' + i), with its last chunk.
std::string chunked_body(std::size_t n, std::size_t size, std::string* data = nullptr) {
  char hex[20];
  std::snprintf(hex, sizeof hex, "%zx", size);
  std::string out;
  for (std::size_t i = 0; i < n; ++i) {
    const std::string piece(size, static_cast<char>('A' + i % 26));
    out += hex;
    out += "\r\n";
    out += piece;
    out += "\r\n";
    if (data != nullptr) *data += piece;
  }
  out += "0\r\n\r\n";
  return out;
}

constexpr std::string_view get_root = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

// ---- heads ----------------------------------------------------------------

// Every byte of the head counts (request line, names, whitespace, line
// ends), and so does every field: 16,000 empty fields ("a:") are 64,000
// bytes and 16,000 fields. Over either limit: 431 (RFC 6585 §5) and close,
// before the handler. With the field limit lifted, the byte limit alone
// still stops them.
TEST(ProtocolHead, SixteenThousandEmptyFieldsAre431) {
  const std::string flood = "GET / HTTP/1.1\r\nHost: x\r\n" + repeat("a:\r\n", 16'000) + "\r\n";
  {
    proto_server s;
    expect_rejected(s, flood, 431);
    EXPECT_TRUE(s.seen().empty());
    EXPECT_EQ(s.stats().heads_rejected, 1u);
    EXPECT_EQ(s.stats().bad_requests, 1u);
  }
  {
    server_options o;
    o.max_header_fields = 1'000'000;
    proto_server s(o);
    expect_rejected(s, flood, 431);
    EXPECT_TRUE(s.seen().empty());
    EXPECT_EQ(s.stats().heads_rejected, 1u);
  }
}

// 1 MB of spaces and tabs (OWS, which a parser skips without reporting)
// before a field value: the bytes count all the same.
TEST(ProtocolHead, AMegabyteOfWhitespaceBeforeAValueIs431) {
  proto_server s;
  const std::string flood = "GET / HTTP/1.1\r\nHost: x\r\nX-Ws:" + repeat(" \t", 512 * 1024) + "v\r\n\r\n";
  expect_rejected(s, flood, 431);
  EXPECT_TRUE(s.seen().empty());
  EXPECT_EQ(s.stats().heads_rejected, 1u);
}

// 3,000 tiny fields never reach the handler (max_header_fields, 100).
TEST(ProtocolHead, ThreeThousandTinyFieldsAre431) {
  proto_server s;
  std::string flood = "GET / HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 3000; ++i) {
    flood += 'x';
    flood += std::to_string(i);
    flood += ": y\r\n";
  }
  flood += "\r\n";
  expect_rejected(s, flood, 431);
  EXPECT_TRUE(s.seen().empty());
  EXPECT_EQ(s.stats().heads_rejected, 1u);
}

// max_header_fields is inclusive: 100 fields (Host among them) are served,
// 101 are 431.
TEST(ProtocolHead, HundredFieldsPassAndHundredAndOneAre431) {
  proto_server s;
  std::string hundred = "GET /hundred HTTP/1.1\r\nHost: x\r\n";
  for (int i = 1; i < 100; ++i) hundred += "X-" + std::to_string(i) + ": v\r\n";
  const std::string one_more = hundred + "X-100: v\r\n\r\n";
  hundred += "\r\n";

  const std::optional<http_reply> ok = ask(s, hundred);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  ASSERT_EQ(s.seen().size(), 1u);
  EXPECT_EQ(s.seen()[0].headers.size(), 100u);

  expect_rejected(s, one_more, 431);
  EXPECT_EQ(s.seen().size(), 1u);
  EXPECT_EQ(s.stats().heads_rejected, 1u);
}

// max_header_bytes is inclusive and counts the whole head: request line,
// fields, every CRLF and the final one. A head of exactly the limit is
// served; one byte more is 431.
TEST(ProtocolHead, AHeadOfExactlyTheLimitPassesAndOneByteMoreIs431) {
  server_options o;
  o.max_header_bytes = 1024;
  proto_server s(o);
  const std::string exact = head_of_size(1024);
  ASSERT_EQ(exact.size(), 1024u);
  const std::optional<http_reply> ok = ask(s, exact);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(ok->header("X-Target"), "/sized-head");

  expect_rejected(s, head_of_size(1025), 431);
  EXPECT_EQ(s.seen().size(), 1u);
  EXPECT_EQ(s.stats().heads_rejected, 1u);
}

// Empty lines before a request line may be skipped (RFC 9112 §2.2), but
// they are bytes the server reads for this head: they count against
// max_header_bytes, so an endless run of CRLFs is 431 too.
TEST(ProtocolHead, LeadingEmptyLinesCountAgainstTheLimit) {
  server_options o;
  o.max_header_bytes = 1024;
  proto_server s(o);
  const std::string lead = repeat("\r\n", 20);
  const std::optional<http_reply> ok = ask(s, head_of_size(1024, lead));
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);

  expect_rejected(s, head_of_size(1025, lead), 431);
  expect_rejected(s, repeat("\r\n", 1000) + std::string(get_root), 431);
  EXPECT_EQ(s.seen().size(), 1u);
  EXPECT_EQ(s.stats().heads_rejected, 2u);
}

// ---- bodies ---------------------------------------------------------------

// A declared Content-Length over max_body_bytes (8 MiB) is 413 (RFC 9110
// §15.5.14) as soon as the head is read: no body byte is needed, the
// handler never runs, the connection is closed.
TEST(ProtocolBody, ADeclaredGigabyteIs413WithoutAnyBody) {
  proto_server s;
  expect_rejected(s, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n", 413);
  EXPECT_TRUE(s.seen().empty());
  EXPECT_EQ(s.stats().bodies_rejected, 1u);
  EXPECT_EQ(s.stats().bad_requests, 1u);
}

// The same while the client keeps trickling the body: the 413 comes at
// once and stays readable (the server reads and discards what follows
// for a while before closing, so no RST destroys the answer).
TEST(ProtocolBody, ADeclaredGigabyteWhileTricklingGetsAReadable413) {
  proto_server s;
  raw_client c = s.connect();
  ASSERT_TRUE(c.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n"));
  const std::string piece(1024, 'b');
  bool answered = false;
  for (int i = 0; i < 500 && !answered; ++i) {  // at most ~10 s
    (void)c.send(piece);
    answered = readable_within(c, 20ms);
  }
  ASSERT_TRUE(answered) << "no answer while trickling";
  (void)c.send_slowly(repeat("b", 8 * 1024), 1024, 5ms);  // more, after the answer
  const std::optional<http_reply> r = c.read_response(wait);
  ASSERT_TRUE(r) << "eof " << c.eof() << ", reset " << c.reset();
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ(r->header("Connection"), "close");
  EXPECT_TRUE(c.closed_by_peer(wait));
  EXPECT_TRUE(s.seen().empty());
  EXPECT_EQ(s.stats().bodies_rejected, 1u);
}

// A chunked body is counted as it arrives: exactly max_body_bytes is
// served, one chunk more is 413 once the count passes the limit, and a
// chunk size alone that passes it is 413 before its bytes.
TEST(ProtocolBody, AChunkedBodyOverTheLimitIs413) {
  server_options o;
  o.max_body_bytes = 64 * 1024;
  proto_server s(o);
  const std::string head = "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  std::string data;
  const std::optional<http_reply> ok = ask(s, head + chunked_body(4, 16 * 1024, &data));
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(ok->body, data);

  expect_rejected(s, head + chunked_body(5, 16 * 1024), 413);
  expect_rejected(s, head + "ffffffff\r\nabc", 413);
  EXPECT_EQ(s.seen().size(), 1u);
  EXPECT_EQ(s.stats().bodies_rejected, 2u);
}

// A streaming handler's body is held to max_body_bytes too: a chunked body
// over it fails the handler's read and the server answers 413; a declared
// Content-Length over it is 413 before the handler.
TEST(ProtocolBody, AStreamedBodyOverTheLimitIs413) {
  server_options o = streaming();
  o.max_body_bytes = 64 * 1024;
  proto_server s(o);
  expect_rejected(
      s, "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked_body(5, 16 * 1024),
      413);
  EXPECT_EQ(s.seen().size(), 1u);  // it ran, and its read failed
  expect_rejected(s, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 65537\r\n\r\n", 413);
  EXPECT_EQ(s.seen().size(), 1u);
  EXPECT_EQ(s.stats().bodies_rejected, 2u);
}

// ---- Expect: 100-continue (RFC 9110 §10.1.1) --------------------------------

constexpr std::string_view expecting_post =
    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";

// A client that sends only the head and waits is told "100 Continue", then
// sends the body and gets the final answer.
TEST(ProtocolContinue, TheHeadAloneGets100ThenTheBodyIsServed) {
  proto_server s;
  raw_client c = s.connect();
  ASSERT_TRUE(c.send(expecting_post));
  const std::optional<http_reply> cont = c.read_response(wait);
  ASSERT_TRUE(cont);
  EXPECT_EQ(cont->version, "HTTP/1.1");
  EXPECT_EQ(cont->status, 100);
  ASSERT_TRUE(c.send("hello"));
  const std::optional<http_reply> r = c.read_response(wait);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "hello");
  EXPECT_EQ(r->header("Connection"), std::nullopt);  // kept alive
  EXPECT_EQ(s.stats().bad_requests, 0u);
}

// A streaming handler: "100 Continue" when it first reads the body.
TEST(ProtocolContinue, AStreamingHandlerThatReadsGets100First) {
  proto_server s(streaming());
  raw_client c = s.connect();
  ASSERT_TRUE(c.send(expecting_post));
  const std::optional<http_reply> cont = c.read_response(wait);
  ASSERT_TRUE(cont);
  EXPECT_EQ(cont->status, 100);
  ASSERT_TRUE(c.send("hello"));
  const std::optional<http_reply> r = c.read_response(wait);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "hello");
}

// A streaming handler that answers without reading the body: the final
// status with no 100 before it (the client need not send the body), and
// the connection is closed since the body was never read.
TEST(ProtocolContinue, AnAnswerWithoutReadingSendsNo100) {
  proto_server s(streaming());
  raw_client c = s.connect();
  ASSERT_TRUE(
      c.send("POST /forbid HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"));
  const std::optional<http_reply> r = c.read_response(wait);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
  EXPECT_EQ(r->body, "forbidden");
  EXPECT_EQ(r->header("Connection"), "close");
  EXPECT_TRUE(c.closed_by_peer(wait));
  EXPECT_EQ(s.seen().size(), 1u);
}

// An expectation other than 100-continue: 417, before the handler.
TEST(ProtocolContinue, AnotherExpectationIs417) {
  proto_server s;
  expect_rejected(
      s, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: something-else\r\n\r\nhello", 417);
  EXPECT_TRUE(s.seen().empty());
  EXPECT_EQ(s.stats().bad_requests, 1u);
}

// "A server that receives a 100-continue expectation in an HTTP/1.0
// request MUST ignore that expectation": the only response is the final
// one. (The server gets 300 ms to send a wrong 100 before the body.)
TEST(ProtocolContinue, AnHttp10ExpectationIsIgnored) {
  proto_server s;
  raw_client c = s.connect();
  ASSERT_TRUE(c.send("POST /echo HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"));
  (void)readable_within(c, 300ms);
  ASSERT_TRUE(c.send("hello"));
  const std::optional<http_reply> r = c.read_response(wait);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "hello");
  EXPECT_TRUE(c.closed_by_peer(wait));
}

// Runs a shell command line (bounded by its own `timeout`); returns its
// exit status and output.
std::pair<int, std::string> run(const std::string& command) {
  FILE* f = ::popen(command.c_str(), "r");
  if (f == nullptr) return {-1, "popen failed"};
  std::string out;
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  return {::pclose(f), out};
}

// curl as a real client: above 1 MiB it sends Expect: 100-continue and waits
// (up to 1 s) for the 100 before the body; with -H it does so for any size.
TEST(ProtocolContinue, CurlGets100Continue) {
  ASSERT_EQ(::access("/usr/bin/curl", X_OK), 0) << "curl not installed (apt-get install curl)";
  proto_server s;
  char dir_template[] = "/tmp/spindle-proto-XXXXXX";
  ASSERT_NE(::mkdtemp(dir_template), nullptr);
  const std::filesystem::path dir = dir_template;
  const std::string file = (dir / "body").string();
  const std::string out = (dir / "out").string();
  std::string data(2 * 1024 * 1024, 'x');
  for (std::size_t i = 0; i < data.size(); i += 4096) data[i] = static_cast<char>('a' + (i / 4096) % 26);
  std::ofstream(file, std::ios::binary) << data;
  const std::string url = "http://127.0.0.1:" + std::to_string(s.port()) + "/echo";
  const std::string curl = "timeout 20 /usr/bin/curl -q -sS -v --noproxy '*' ";

  const auto [status, log] = run(curl + "--data-binary @" + file + " -o " + out + " " + url + " 2>&1");
  EXPECT_EQ(status, 0) << log;
  EXPECT_NE(log.find("> Expect: 100-continue"), std::string::npos) << log;
  EXPECT_NE(log.find("< HTTP/1.1 100 Continue"), std::string::npos) << log;
  EXPECT_NE(log.find("< HTTP/1.1 200"), std::string::npos) << log;
  std::ifstream in(out, std::ios::binary);
  const std::string echoed((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(echoed == data) << "echoed " << echoed.size() << " bytes of " << data.size();

  const auto [status2, log2] =
      run(curl + "-H 'Expect: 100-continue' --data hello -o " + out + " " + url + " 2>&1");
  EXPECT_EQ(status2, 0) << log2;
  EXPECT_NE(log2.find("< HTTP/1.1 100 Continue"), std::string::npos) << log2;
  EXPECT_NE(log2.find("< HTTP/1.1 200"), std::string::npos) << log2;
  std::ifstream in2(out, std::ios::binary);
  const std::string echoed2((std::istreambuf_iterator<char>(in2)), std::istreambuf_iterator<char>());
  EXPECT_EQ(echoed2, "hello");
  std::filesystem::remove_all(dir);
}

// ---- Host (RFC 9112 §3.2) ---------------------------------------------------

// "A server MUST respond with a 400 (Bad Request) status code to any
// HTTP/1.1 request message that lacks a Host header field and to any
// request message that contains more than one Host header field line or a
// Host header field with an invalid field value."
TEST(ProtocolHost, MissingDuplicatedOrInvalidHostIs400) {
  proto_server s;
  const std::vector<std::string> bad = {
      "GET / HTTP/1.1\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: x@y\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h:99999x\r\n\r\n",
  };
  for (const std::string& b : bad) expect_rejected(s, b, 400);
  EXPECT_TRUE(s.seen().empty());
  EXPECT_EQ(s.stats().bad_requests, bad.size());
}

// Valid Host values reach the handler as request::authority; HTTP/1.0 may
// omit Host (then the authority is empty).
TEST(ProtocolHost, ValidHostsAndHttp10WithoutHostAreServed) {
  proto_server s;
  const std::optional<http_reply> a = ask(s, "GET /a HTTP/1.1\r\nHost: Example.Test:8080\r\n\r\n");
  const std::optional<http_reply> b = ask(s, "GET /b HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n");
  const std::optional<http_reply> c = ask(s, "GET /c HTTP/1.0\r\n\r\n");
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(a->status, 200);
  EXPECT_EQ(b->status, 200);
  EXPECT_EQ(c->status, 200);
  const std::vector<seen_request> seen = s.seen();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].authority, "Example.Test:8080");
  EXPECT_EQ(seen[1].authority, "[::1]:8080");
  EXPECT_EQ(seen[2].authority, "");
  EXPECT_EQ(seen[2].version_minor, 0);
  EXPECT_EQ(s.stats().bad_requests, 0u);
}

// ---- request targets (RFC 9112 §3.2) ----------------------------------------

// Absolute-form (§3.2.2) MUST be accepted; the authority comes from the
// target and Host is ignored; the handler sees origin-form.
TEST(ProtocolTarget, AbsoluteFormBecomesOriginForm) {
  proto_server s;
  struct form {
    std::string target;
    std::string path;
    std::string authority;
  };
  const std::vector<form> forms = {
      {"http://example.test:8080/p?q=1", "/p?q=1", "example.test:8080"},
      {"http://example.test", "/", "example.test"},
      {"http://h?x", "/?x", "h"},
      {"HTTP://h/upper", "/upper", "h"},
      {"https://secure.test/s", "/s", "secure.test"},
  };
  for (const form& f : forms) {
    SCOPED_TRACE(f.target);
    const std::optional<http_reply> r = ask(s, "GET " + f.target + " HTTP/1.1\r\nHost: other\r\n\r\n");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->header("X-Target"), f.path);
    EXPECT_EQ(r->header("X-Authority"), f.authority);
  }
  ASSERT_EQ(s.seen().size(), forms.size());
  EXPECT_EQ(s.seen()[0].target, "/p?q=1");
  EXPECT_EQ(s.seen()[0].authority, "example.test:8080");
}

// Other schemes, and userinfo (RFC 9110 §4.2.4: a recipient SHOULD treat it
// as an error), are 400.
TEST(ProtocolTarget, ForeignSchemesAndUserinfoAre400) {
  proto_server s;
  expect_rejected(s, "GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_rejected(s, "GET http://user@h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  EXPECT_TRUE(s.seen().empty());
  EXPECT_EQ(s.stats().bad_requests, 2u);
}

// asterisk-form (§3.2.4) is for OPTIONS only; authority-form (§3.2.3) is
// CONNECT's, and its authority reaches the handler.
TEST(ProtocolTarget, AsteriskAndAuthorityForms) {
  proto_server s;
  const std::optional<http_reply> options = ask(s, "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(options);
  EXPECT_EQ(options->status, 200);
  EXPECT_EQ(options->header("X-Target"), "*");

  expect_rejected(s, "GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400);

  raw_client c = s.connect();
  ASSERT_TRUE(c.send("CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n"));
  const std::optional<http_reply> connect = c.read_response(wait);
  ASSERT_TRUE(connect);
  EXPECT_EQ(connect->status, 501);
  const std::vector<seen_request> seen = s.seen();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].method, "OPTIONS");
  EXPECT_EQ(seen[1].method, "CONNECT");
  EXPECT_EQ(seen[1].authority, "example.test:443");
  EXPECT_EQ(s.stats().bad_requests, 1u);
}

// ---- versions and methods -----------------------------------------------------

// An HTTP/1.0 client asking for keep-alive is told so (RFC 9112 §9.3 and
// Appendix C.2.2) and its next request is served on the connection.
TEST(ProtocolVersion, Http10KeepAliveIsEchoedAndHonoured) {
  proto_server s;
  raw_client c = s.connect();
  ASSERT_TRUE(c.send("GET /one HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  const std::optional<http_reply> one = c.read_response(wait);
  ASSERT_TRUE(one);
  EXPECT_EQ(one->status, 200);
  EXPECT_EQ(one->header("Connection"), "keep-alive");
  ASSERT_TRUE(c.send("GET /two HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  const std::optional<http_reply> two = c.read_response(wait);
  ASSERT_TRUE(two);
  EXPECT_EQ(two->header("X-Target"), "/two");
  EXPECT_EQ(two->header("Connection"), "keep-alive");
  EXPECT_EQ(s.targets(), (std::vector<std::string>{"/one", "/two"}));
}

// Without keep-alive an HTTP/1.0 connection ends after the response.
TEST(ProtocolVersion, Http10WithoutKeepAliveIsClosed) {
  proto_server s;
  raw_client c = s.connect();
  ASSERT_TRUE(c.send("GET /one HTTP/1.0\r\n\r\n"));
  const std::optional<http_reply> r = c.read_response(wait);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->header("Connection"), "close");
  EXPECT_TRUE(c.closed_by_peer(wait));
}

// Another major version on an HTTP/1 request line: 505 (RFC 9110 §15.6.6);
// a higher minor version is served as HTTP/1.1 (RFC 9110 §2.5).
TEST(ProtocolVersion, OtherMajorVersionsAre505AndHttp12IsServedAs11) {
  proto_server s;
  expect_rejected(s, "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505);
  expect_rejected(s, "GET / HTTP/3.0\r\nHost: x\r\n\r\n", 505);
  EXPECT_TRUE(s.seen().empty());

  raw_client c = s.connect();
  ASSERT_TRUE(c.send("GET /twelve HTTP/1.2\r\nHost: x\r\n\r\n"));
  const std::optional<http_reply> r = c.read_response(wait);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->version, "HTTP/1.1");
  EXPECT_EQ(r->status, 200);
  ASSERT_TRUE(c.send("GET /again HTTP/1.2\r\nHost: x\r\n\r\n"));  // kept alive, as 1.1
  const std::optional<http_reply> again = c.read_response(wait);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->header("X-Target"), "/again");
  ASSERT_EQ(s.seen().size(), 2u);
  EXPECT_EQ(s.seen()[0].version_minor, 1);
  EXPECT_EQ(s.stats().bad_requests, 2u);
}

// A well-formed method the server does not know is the handler's to
// answer (RFC 9110 §9.1: 501 is its call), with its body; a method that is
// not a token is malformed: 400.
TEST(ProtocolVersion, UnknownMethodsReachTheHandlerAndMalformedOnesAre400) {
  proto_server s;
  for (const std::string method : {"FOO", "QUERY", "PURGE"}) {
    SCOPED_TRACE(method);
    const std::optional<http_reply> r =
        ask(s, method + " /m HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->header("X-Method"), method);
    EXPECT_EQ(r->body, "abc");
  }
  const std::optional<http_reply> bodiless = ask(s, "FOO /m HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(bodiless);
  EXPECT_EQ(bodiless->header("X-Method"), "FOO");

  expect_rejected(s, "G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400);
  const std::vector<seen_request> seen = s.seen();
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[0].method, "FOO");
  EXPECT_EQ(seen[0].body, "abc");
  EXPECT_EQ(seen[1].method, "QUERY");
  EXPECT_EQ(seen[2].method, "PURGE");
  EXPECT_EQ(s.stats().bad_requests, 1u);
}

// ---- pipelining (RFC 9112 §9.3.2) ---------------------------------------------

// Ten requests in one send, earlier ones slower to handle, some with
// bodies: "A server MUST send its responses to those requests in the same
// order that the requests were received."
TEST(ProtocolPipelining, ResponsesComeInRequestOrder) {
  proto_server s;
  std::string all;
  std::vector<std::string> targets;
  for (int i = 0; i < 10; ++i) {
    const std::string target = "/sleep/" + std::to_string((9 - i) * 5) + "?n=" + std::to_string(i);
    targets.push_back(target);
    if (i % 3 == 1) {
      const std::string body = "body of " + std::to_string(i);
      all += "POST " + target + " HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(body.size()) +
             "\r\n\r\n" + body;
    } else {
      all += "GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n";
    }
  }
  raw_client c = s.connect();
  ASSERT_TRUE(c.send(all));
  for (int i = 0; i < 10; ++i) {
    SCOPED_TRACE(i);
    const std::optional<http_reply> r = c.read_response(wait);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->header("X-Target"), targets[i]);
    EXPECT_EQ(r->body, i % 3 == 1 ? "body of " + std::to_string(i) : "");
  }
  EXPECT_EQ(s.targets(), targets);
}

// A request pipelined after one with Connection: close is not served
// (RFC 9112 §9.6: the server closes after that response).
TEST(ProtocolPipelining, NothingAfterConnectionCloseIsServed) {
  proto_server s;
  raw_client c = s.connect();
  ASSERT_TRUE(
      c.send("GET /p1 HTTP/1.1\r\nHost: x\r\n\r\n"
             "GET /p2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
             "GET /p3 HTTP/1.1\r\nHost: x\r\n\r\n"));
  const std::optional<http_reply> one = c.read_response(wait);
  const std::optional<http_reply> two = c.read_response(wait);
  ASSERT_TRUE(one && two);
  EXPECT_EQ(one->header("X-Target"), "/p1");
  EXPECT_EQ(two->header("X-Target"), "/p2");
  EXPECT_EQ(two->header("Connection"), "close");
  EXPECT_TRUE(c.closed_by_peer(wait));
  EXPECT_EQ(s.targets(), (std::vector<std::string>{"/p1", "/p2"}));
}

// ---- request smuggling (RFC 9112 §6, §5, §2.2) ------------------------------------

// Each message is ambiguous about where it ends, and carries a second
// request ("/smuggled") where a lenient reading would find one. The server
// must answer 400 and close, and neither request may reach the handler.
TEST(ProtocolSmuggling, AmbiguousFramingIs400AndNothingIsServed) {
  proto_server s;
  const std::string inner = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
  const std::string post = "POST /outer HTTP/1.1\r\nHost: x\r\n";
  const std::string chunked = post + "Transfer-Encoding: chunked\r\n\r\n";
  std::string nul_value = post + "X-A: a";
  nul_value += '\0';
  nul_value += "b\r\nContent-Length: 0\r\n\r\n" + inner;
  const std::vector<std::string> attacks = {
      // §6.1: Content-Length with Transfer-Encoding (either order).
      post + "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + inner,
      post + "Transfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\n" + inner,
      // §6.3: several or listed Content-Length values.
      post + "Content-Length: 5\r\nContent-Length: 41\r\n\r\nhello" + inner,
      post + "Content-Length: 5, 5\r\n\r\nhello" + inner,
      post + "Content-Length: 5, 6\r\n\r\nhello" + inner,
      // §6.3: chunked not the final coding, or not there at all in a request.
      post + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + inner,
      post + "Transfer-Encoding: identity\r\n\r\n" + inner,
      // §7.1: chunk-size = 1*HEXDIG.
      chunked + "+5\r\nhello\r\n0\r\n\r\n" + inner,
      chunked + "0x5\r\nhello\r\n0\r\n\r\n" + inner,
      chunked + "-1\r\nhello\r\n0\r\n\r\n" + inner,
      chunked + "1000000000000000000000005\r\nhello\r\n0\r\n\r\n" + inner,
      // §5.5 (RFC 9110): NUL in a field value; §2.2: a bare CR.
      nul_value,
      post + "X-A: a\rContent-Length: 0\r\n\r\n" + inner,
      // §5.1: whitespace between the field name and the colon.
      post + "Content-Length : 5\r\n\r\nhello" + inner,
  };
  for (const std::string& a : attacks) expect_rejected(s, a, 400);
  EXPECT_TRUE(s.targets().empty()) << s.targets().size() << " requests reached the handler";
  EXPECT_EQ(s.stats().bad_requests, attacks.size());
}

// RFC 9112 §5.2: a server MUST either reject obs-fold with 400 or replace
// each obs-fold with SP before interpreting the value. Either way the
// folded line is never a field of its own: here it would have declared a
// body that swallows the next request. (Today the server folds.)
TEST(ProtocolSmuggling, ObsFoldIsRejectedOrFoldedIntoTheValue) {
  proto_server s;
  raw_client c = s.connect();
  ASSERT_TRUE(
      c.send("GET /fold HTTP/1.1\r\nHost: x\r\nX-A: a\r\n Content-Length: 28\r\n\r\n"
             "GET /next HTTP/1.1\r\nHost: x\r\n\r\n"));
  const std::optional<http_reply> r = c.read_response(wait);
  ASSERT_TRUE(r);
  if (r->status == 400) {
    EXPECT_EQ(r->header("Connection"), "close");
    EXPECT_TRUE(c.closed_by_peer(wait));
    EXPECT_TRUE(s.seen().empty());
    return;
  }
  EXPECT_EQ(r->status, 200);
  const std::optional<http_reply> next = c.read_response(wait);
  ASSERT_TRUE(next);
  EXPECT_EQ(next->header("X-Target"), "/next");
  const std::vector<seen_request> seen = s.seen();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].body, "");
  EXPECT_FALSE(seen[0].headers.contains("Content-Length"));
  const std::optional<std::string_view> folded = seen[0].headers.get("X-A");
  ASSERT_TRUE(folded);
  EXPECT_EQ(folded->find_first_of("\r\n"), std::string_view::npos) << shown(*folded);
  EXPECT_NE(folded->find("Content-Length: 28"), std::string_view::npos) << shown(*folded);
}

// RFC 9112 §2.2: "a recipient MAY recognize a single LF as a line
// terminator". The server (llhttp underneath) does after the request line
// and for the empty line that ends the head, and rejects a field line
// ended by a bare LF (400 and close). Each is allowed; this pins the
// behaviour so that a change is a decision, and checks that no reading
// lets a second request through.
TEST(ProtocolSmuggling, BareLfLineEndsAreHandledConsistently) {
  proto_server s;
  const std::optional<http_reply> after_line = ask(s, "GET /line HTTP/1.1\nHost: x\r\n\r\n");
  ASSERT_TRUE(after_line);
  EXPECT_EQ(after_line->status, 200);
  const std::optional<http_reply> at_end = ask(s, "GET /end HTTP/1.1\r\nHost: x\r\n\n");
  ASSERT_TRUE(at_end);
  EXPECT_EQ(at_end->status, 200);
  expect_rejected(
      s, "GET /field HTTP/1.1\r\nHost: x\nContent-Length: 0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n", 400);
  expect_rejected(s, "POST /all HTTP/1.1\nHost: x\nContent-Length: 5\n\nhelloGET /smuggled HTTP/1.1\n\n",
                  400);
  EXPECT_EQ(s.targets(), (std::vector<std::string>{"/line", "/end"}));
  EXPECT_EQ(s.stats().bad_requests, 2u);
}

// ---- streaming response bodies ------------------------------------------------

// No Content-Length on HTTP/1.1: chunked (RFC 9112 §7.1), one chunk per
// write, then the last chunk; the connection stays open for the next one.
TEST(ProtocolStreaming, AnUnsizedBodyIsChunkedAndKeepsTheConnection) {
  proto_server s;
  raw_client c = s.connect();
  ASSERT_TRUE(c.send("GET /chunks HTTP/1.1\r\nHost: x\r\n\r\n"));
  const std::optional<http_reply> r = c.read_response(wait);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_TRUE(r->chunked);
  EXPECT_EQ(r->header("Content-Length"), std::nullopt);
  EXPECT_EQ(r->body, "alphabetagamma");
  EXPECT_EQ(r->header("Connection"), std::nullopt);

  // The same again, on the same connection, byte for byte this time.
  ASSERT_TRUE(c.send("GET /chunks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  const std::string raw = c.read_until_close(wait);
  EXPECT_TRUE(c.eof());
  const std::size_t body = raw.find("\r\n\r\n");
  ASSERT_NE(body, std::string::npos) << raw;
  EXPECT_EQ(raw.substr(body + 4), "5\r\nalpha\r\n4\r\nbeta\r\n5\r\ngamma\r\n0\r\n\r\n");
}

// HTTP/1.0 has no chunked coding: the body ends with the connection.
TEST(ProtocolStreaming, AnUnsizedBodyToHttp10IsCloseDelimited) {
  proto_server s;
  raw_client c = s.connect();
  ASSERT_TRUE(c.send("GET /chunks HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  const std::optional<http_reply> r = c.read_response(wait);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_FALSE(r->chunked);
  EXPECT_EQ(r->header("Transfer-Encoding"), std::nullopt);
  EXPECT_EQ(r->header("Content-Length"), std::nullopt);
  EXPECT_EQ(r->header("Connection"), "close");
  EXPECT_EQ(r->body, "alphabetagamma");
  EXPECT_TRUE(c.eof());
}

// A declared Content-Length: exactly those bytes, not chunked, and the
// connection carries the next request.
TEST(ProtocolStreaming, ASizedBodyIsSentAsDeclared) {
  proto_server s;
  raw_client c = s.connect();
  ASSERT_TRUE(c.send("GET /sized HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n"));
  const std::optional<http_reply> r = c.read_response(wait);
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->chunked);
  EXPECT_EQ(r->header("Content-Length"), "14");
  EXPECT_EQ(r->body, "alphabetagamma");
  const std::optional<http_reply> after = c.read_response(wait);
  ASSERT_TRUE(after);
  EXPECT_EQ(after->header("X-Target"), "/after");
}

// HEAD (RFC 9110 §9.3.2): the head only. The next response on the
// connection parses cleanly, so no body byte was sent.
TEST(ProtocolStreaming, HeadSendsNoBody) {
  proto_server s;
  raw_client c = s.connect();
  ASSERT_TRUE(
      c.send("HEAD /chunks HTTP/1.1\r\nHost: x\r\n\r\n"
             "HEAD /sized HTTP/1.1\r\nHost: x\r\n\r\n"
             "GET /after HTTP/1.1\r\nHost: x\r\n\r\n"));
  const std::optional<http_reply> chunks = c.read_response(wait, true);
  ASSERT_TRUE(chunks);
  EXPECT_EQ(chunks->status, 200);
  const std::optional<http_reply> sized = c.read_response(wait, true);
  ASSERT_TRUE(sized);
  EXPECT_EQ(sized->status, 200);
  EXPECT_EQ(sized->header("Content-Length"), "14");
  const std::optional<http_reply> after = c.read_response(wait);
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 200);
  EXPECT_EQ(after->header("X-Target"), "/after");
  EXPECT_EQ(after->body, "");
}

// 64 MiB in 64 KiB writes to a client with a small receive buffer that
// starts reading late: the writer waits for it, and every byte arrives in
// order.
TEST(ProtocolStreaming, ALargeBodyReachesASlowClientWhole) {
  proto_server s;
  raw_client c = s.connect();
  const int small = 16 * 1024;
  ASSERT_EQ(::setsockopt(c.fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
  ASSERT_TRUE(c.send("GET /large HTTP/1.1\r\nHost: x\r\n\r\n"));
  std::this_thread::sleep_for(200ms);  // a slow reader: the server's writes wait meanwhile
  const std::optional<http_reply> r = c.read_response(60s);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->chunked);
  ASSERT_EQ(r->body.size(), large_piece * large_pieces);
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < large_pieces; ++i) {
    const char want = static_cast<char>('a' + i % 26);
    const std::string_view piece = std::string_view(r->body).substr(i * large_piece, large_piece);
    if (piece.find_first_not_of(want) != std::string_view::npos) ++wrong;
  }
  EXPECT_EQ(wrong, 0u);
  EXPECT_EQ(s.stats().send_timeouts, 0u);
}

// Writing past the declared Content-Length is the handler's bug:
// body_writer::write throws usage_error (nothing of the write is sent) and
// the connection is closed, so the client sees the body cut short rather
// than extra bytes it would read as the next response.
TEST(ProtocolStreaming, WritingPastTheDeclaredLengthIsAUsageError) {
  overrun_usage_errors = 0;
  proto_server s;
  raw_client c = s.connect();
  ASSERT_TRUE(c.send("GET /overrun HTTP/1.1\r\nHost: x\r\n\r\n"));
  const std::string raw = c.read_until_close(wait);
  EXPECT_TRUE(c.closed());
  EXPECT_TRUE(raw.starts_with("HTTP/1.1 200")) << raw;
  EXPECT_NE(raw.find("Content-Length: 4\r\n"), std::string::npos) << raw;
  EXPECT_TRUE(raw.ends_with("\r\n\r\n")) << raw;  // the head, no body byte
  EXPECT_EQ(overrun_usage_errors.load(), 1);
  EXPECT_EQ(s.stats().handler_failures, 1u);
}

// ---- streaming request bodies -------------------------------------------------

// A chunked body sent in small pieces, read by the handler piece by piece
// (body_stream->read() until empty), arrives whole; the connection is kept.
TEST(ProtocolStreaming, AStreamedChunkedBodyArrivesWhole) {
  proto_server s(streaming());
  raw_client c = s.connect();
  std::string data;
  const std::string body = chunked_body(20, 8 * 1024, &data);
  // The head with the first bytes of the body in one segment, the rest in pieces.
  ASSERT_TRUE(
      c.send("POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body.substr(0, 4096)));
  ASSERT_TRUE(c.send_slowly(std::string_view(body).substr(4096), 4096, 1ms));
  const std::optional<http_reply> r = c.read_response(wait);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_TRUE(r->body == data) << r->body.size() << " bytes of " << data.size();
  EXPECT_EQ(r->header("Connection"), std::nullopt);
  ASSERT_TRUE(c.send(get_root));
  const std::optional<http_reply> next = c.read_response(wait);
  ASSERT_TRUE(next);
  EXPECT_EQ(next->status, 200);
  ASSERT_EQ(s.seen().size(), 2u);
  EXPECT_EQ(s.seen()[0].body.size(), 0u);  // streamed: request::body stays empty (message.hpp)
}

// A handler that answers without reading the body: its response goes out
// with Connection: close, and the rest of the body the client still sends
// afterwards is read and dropped, not answered with an RST that would
// destroy the response before the client reads it.
TEST(ProtocolStreaming, AnUnreadBodyClosesTheConnectionAfterTheResponse) {
  proto_server s(streaming());
  raw_client c = s.connect();
  constexpr std::size_t length = 256 * 1024;
  ASSERT_TRUE(c.send("POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(length) +
                     "\r\n\r\n" + std::string(16 * 1024, 'u')));
  ASSERT_TRUE(readable_within(c, wait)) << "no answer";
  (void)c.send(std::string(length - 16 * 1024, 'u'));
  const std::optional<http_reply> r = c.read_response(wait);
  ASSERT_TRUE(r) << "eof " << c.eof() << ", reset " << c.reset();
  EXPECT_EQ(r->status, 202);
  EXPECT_EQ(r->body, "ignored");
  EXPECT_EQ(r->header("Connection"), "close");
  EXPECT_TRUE(c.closed_by_peer(wait));
  EXPECT_EQ(s.stats().bad_requests, 0u);
}

// ---- statistics -----------------------------------------------------------------

// Each answer the server gives itself is counted once, in bad_requests
// and in its own counter.
TEST(ProtocolStatistics, CountersMatchTheAnswersCaused) {
  server_options o;
  o.max_header_bytes = 1024;
  o.max_body_bytes = 1024;
  proto_server s(o);
  const std::optional<http_reply> ok = ask(s, get_root);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);

  expect_rejected(s, head_of_size(1025), 431);
  expect_rejected(s, "GET / HTTP/1.1\r\nHost: x\r\n" + repeat("a:\r\n", 101) + "\r\n", 431);
  expect_rejected(s, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1025\r\n\r\n", 413);
  expect_rejected(
      s, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked_body(3, 512), 413);
  expect_rejected(s, "GET / HTTP/1.1\r\n\r\n", 400);
  expect_rejected(s, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                  400);
  expect_rejected(s, "G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400);
  expect_rejected(s, "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505);
  expect_rejected(s, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nExpect: nothing\r\n\r\nx", 417);

  const std::optional<http_reply> ok2 = ask(s, get_root);
  ASSERT_TRUE(ok2);
  EXPECT_EQ(ok2->status, 200);

  const server_statistics st = s.stats();
  EXPECT_EQ(st.heads_rejected, 2u);
  EXPECT_EQ(st.bodies_rejected, 2u);
  EXPECT_EQ(st.bad_requests, 9u);
  EXPECT_EQ(st.bodies_deferred, 0u);
  EXPECT_EQ(st.header_timeouts, 0u);
  EXPECT_EQ(st.body_timeouts, 0u);
  EXPECT_EQ(st.handler_failures, 0u);
  EXPECT_EQ(s.seen().size(), 2u);
}

}  // namespace
}  // namespace spindle::http
