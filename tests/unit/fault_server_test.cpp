#include "support/fault_server.hpp"

#include <dirent.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <chrono>
#include <future>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "spindle/background_loop.hpp"
#include "spindle/cancel_scope.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/http/errors.hpp"
#include "spindle/http/parser.hpp"
#include "spindle/net/tcp.hpp"
#include "spindle/net/tls.hpp"
#include "support/test_support.hpp"

// The fault server checked with raw TCP and TLS clients (there is no HTTP
// client to use yet): requests are written by hand and responses parsed with
// message_parser.

namespace spindle::test {
namespace {

using namespace std::chrono_literals;
using http::message_parser;

constexpr std::size_t max_reads = 100'000;  // bounds every read loop below

// Threads of this process.
std::size_t thread_count() {
  std::size_t n = 0;
  if (DIR* d = opendir("/proc/self/task")) {
    while (dirent* e = readdir(d)) n += e->d_name[0] != '.' ? 1 : 0;
    closedir(d);
  }
  return n;
}

std::string get(std::string_view target, std::string_view extra_headers = "Connection: close\r\n") {
  return "GET " + std::string(target) + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + std::string(extra_headers) +
         "\r\n";
}

// What a raw exchange received, and how the connection ended.
struct raw_result {
  std::string bytes;
  std::string end;  // "eof" or "connection_error"
};

// `request` must outlive the task.
task<raw_result> exchange_on(net::tcp_stream& s, std::string_view request) {
  raw_result r;
  co_await s.write_all(request);
  char buf[16 * 1024];
  try {
    for (std::size_t i = 0; i < max_reads; ++i) {
      const std::size_t n = co_await s.read_some(std::span<char>(buf));
      if (n == 0) {
        r.end = "eof";
        break;
      }
      r.bytes.append(buf, n);
    }
  } catch (const net::connection_error&) {
    r.end = "connection_error";
  }
  co_return r;
}

template <class T>
task<T> bounded(task<T> t) {
  co_return co_await with_timeout(10s, std::move(t));
}

// Runs `t` on a new loop on this thread, bounded to 10 s.
template <class T>
T run_bounded(task<T> t) {
  event_loop loop;
  return loop.run(bounded(std::move(t)));
}

task<raw_result> exchange_task(std::uint16_t port, std::string request) {
  net::tcp_stream s = co_await net::connect(net::socket_address::loopback_v4(port));
  co_return co_await exchange_on(s, request);
}

// Sends `request` on a new connection and reads until the end of the stream.
raw_result exchange(std::uint16_t port, std::string request) {
  return run_bounded(exchange_task(port, std::move(request)));
}

// Parses one response from `bytes` (all that the connection delivered).
http::response parse(const std::string& bytes) {
  http::parse_limits limits;
  limits.max_header_bytes = 32u << 20;
  limits.max_header_fields = std::numeric_limits<std::size_t>::max();
  message_parser p(message_parser::kind::response, limits);
  p.feed(bytes);
  if (!p.complete()) p.finish();
  return std::move(p.response_message());
}

// Reads one response from `s`; `in` keeps bytes past its end.
task<http::response> read_response(net::tcp_stream& s, std::string& in) {
  message_parser p(message_parser::kind::response);
  char buf[16 * 1024];
  for (std::size_t i = 0; i < max_reads; ++i) {
    if (!in.empty()) {
      in.erase(0, p.feed(in));
      if (p.complete()) co_return std::move(p.response_message());
    }
    const std::size_t n = co_await s.read_some(std::span<char>(buf));
    if (n == 0) {
      p.finish();
      co_return std::move(p.response_message());
    }
    in.append(buf, n);
  }
  throw std::runtime_error("read_response: too many reads");
}

std::string inflate_all(const std::string& data, int window_bits) {
  z_stream z{};
  if (inflateInit2(&z, window_bits) != Z_OK) return "inflateInit2 failed";
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  std::string out;
  int r = Z_OK;
  while (r == Z_OK) {  // each turn makes progress or ends
    char buf[16 * 1024];
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    r = inflate(&z, Z_NO_FLUSH);
    out.append(buf, sizeof buf - z.avail_out);
  }
  inflateEnd(&z);
  return r == Z_STREAM_END ? out : "inflate error " + std::to_string(r);
}

std::string header(const http::response& r, std::string_view name) {
  return std::string(r.headers.get(name).value_or("<none>"));
}

TEST(FaultServer, OkOverPlainTcp) {
  fault_server srv;
  EXPECT_EQ(srv.base_url(), "http://127.0.0.1:" + std::to_string(srv.port()));
  const raw_result r = exchange(srv.port(), get("/ok"));
  EXPECT_EQ(r.end, "eof");
  const http::response resp = parse(r.bytes);
  EXPECT_EQ(resp.status, 200);
  EXPECT_EQ(resp.body, "ok");
  EXPECT_EQ(header(resp, "Content-Length"), "2");
  EXPECT_EQ(srv.connections_accepted(), 1u);
  EXPECT_EQ(srv.requests_served(), 1u);
}

TEST(FaultServer, EchoReflectsMethodTargetHeadersAndBody) {
  fault_server srv;
  const raw_result r = exchange(srv.port(),
                                "POST /echo?x=1 HTTP/1.1\r\nHost: h\r\nX-Test: yes\r\nContent-Length: 5\r\n"
                                "Connection: close\r\n\r\nhello");
  const http::response resp = parse(r.bytes);
  EXPECT_EQ(resp.status, 200);
  EXPECT_EQ(resp.body, "POST /echo?x=1\nHost: h\nX-Test: yes\nContent-Length: 5\nConnection: close\n\nhello");
  const auto seen = srv.received();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].body, "hello");
  EXPECT_EQ(seen[0].target, "/echo?x=1");
}

TEST(FaultServer, ExpectContinueGetsAnInterimResponseBeforeTheBody) {
  fault_server srv;
  auto client = [&]() -> task<std::string> {
    net::tcp_stream s = co_await net::connect(net::socket_address::loopback_v4(srv.port()));
    const std::string head =
        "PUT /echo HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n"
        "Connection: close\r\n\r\n";
    co_await s.write_all(head);
    std::string in;
    const http::response interim = co_await read_response(s, in);
    const raw_result rest = co_await exchange_on(s, "abc");
    co_return std::to_string(interim.status) + "|" + in + rest.bytes;
  };
  const std::string got = run_bounded(client());
  EXPECT_EQ(got.rfind("100|HTTP/1.1 200 OK\r\n", 0), 0u) << got;
  EXPECT_NE(got.find("\r\n\r\nPUT /echo\n"), std::string::npos) << got;
  EXPECT_TRUE(got.ends_with("\n\nabc")) << got;
}

TEST(FaultServer, KeepAliveCarriesTwoRequestsOnOneConnection) {
  fault_server srv;
  auto client = [&]() -> task<std::string> {
    net::tcp_stream s = co_await net::connect(net::socket_address::loopback_v4(srv.port()));
    std::string in;
    std::string bodies;
    for (int i = 0; i < 2; ++i) {
      const std::string request = get("/ok", "");
      co_await s.write_all(request);
      const http::response resp = co_await read_response(s, in);
      bodies += std::to_string(resp.status) + " " + resp.body + ";";
    }
    co_return bodies;
  };
  EXPECT_EQ(run_bounded(client()), "200 ok;200 ok;");
  ASSERT_TRUE(srv.wait_open_connections_at_most(0, 10s));
  EXPECT_EQ(srv.requests_per_connection(), std::vector<std::uint64_t>{2});
  EXPECT_EQ(srv.connections_accepted(), 1u);
  EXPECT_EQ(srv.requests_served(), 2u);
}

TEST(FaultServer, TooLongBodyLeavesJunkAndKeepsTheConnection) {
  fault_server srv;
  auto client = [&]() -> task<std::string> {
    net::tcp_stream s = co_await net::connect(net::socket_address::loopback_v4(srv.port()));
    const std::string first = get("/too-long-body", "");
    co_await s.write_all(first);
    std::string in;
    const http::response resp = co_await read_response(s, in);
    // The junk arrives in the same write as the body.
    const std::string second = get("/ok");
    const raw_result rest = co_await exchange_on(s, second);
    co_return resp.body + "|" + in + "|" + rest.bytes.substr(0, 15);
  };
  EXPECT_EQ(run_bounded(client()), "hello|JUNK!|HTTP/1.1 200 OK");
  ASSERT_TRUE(srv.wait_open_connections_at_most(0, 10s));
  EXPECT_EQ(srv.requests_per_connection(), std::vector<std::uint64_t>{2});
}

TEST(FaultServer, ResetHeadersGivesPartialBytesThenErrorOrEof) {
  fault_server srv;
  const raw_result r = exchange(srv.port(), get("/reset-headers", ""));
  EXPECT_TRUE(r.end == "connection_error" || r.end == "eof") << r.end;
  const std::string_view partial = "HTTP/1.1 200 OK\r\nContent-Le";
  EXPECT_FALSE(r.bytes.empty());  // on loopback the bytes written before the RST arrive first
  EXPECT_LE(r.bytes.size(), partial.size());
  EXPECT_EQ(partial.substr(0, r.bytes.size()), r.bytes);
  EXPECT_THROW(parse(r.bytes), http::protocol_error);
  ASSERT_TRUE(srv.wait_open_connections_at_most(0, 10s));
  EXPECT_EQ(srv.requests_per_connection(), std::vector<std::uint64_t>{1});
}

TEST(FaultServer, ResetBodyCutsTheBodyShort) {
  fault_server srv;
  const raw_result r = exchange(srv.port(), get("/reset-body", ""));
  EXPECT_TRUE(r.end == "connection_error" || r.end == "eof") << r.end;
  EXPECT_EQ(r.bytes.find("Content-Length: 1000\r\n"), r.bytes.find("Content-Length")) << r.bytes;
  EXPECT_THROW(parse(r.bytes), http::protocol_error);
}

TEST(FaultServer, WrongLengthSendsTenBytesThenEof) {
  fault_server srv;
  const raw_result r = exchange(srv.port(), get("/wrong-length", ""));
  EXPECT_EQ(r.end, "eof");
  const std::size_t head_end = r.bytes.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos) << r.bytes;
  EXPECT_NE(r.bytes.find("Content-Length: 100\r\n"), std::string::npos);
  EXPECT_EQ(r.bytes.substr(head_end + 4), "0123456789");
  EXPECT_THROW(parse(r.bytes), http::protocol_error);
}

TEST(FaultServer, GzipAndDeflateBodiesInflateToTheText) {
  fault_server srv;
  const http::response gz = parse(exchange(srv.port(), get("/gzip")).bytes);
  EXPECT_EQ(header(gz, "Content-Encoding"), "gzip");
  EXPECT_LT(gz.body.size(), fault_server::gzip_text().size() / 4);
  EXPECT_GE(fault_server::gzip_text().size(), 10u * 1024);
  EXPECT_EQ(inflate_all(gz.body, 31), fault_server::gzip_text());

  const http::response df = parse(exchange(srv.port(), get("/deflate")).bytes);
  EXPECT_EQ(header(df, "Content-Encoding"), "deflate");
  EXPECT_EQ(inflate_all(df.body, 15), fault_server::gzip_text());

  const http::response bad = parse(exchange(srv.port(), get("/gzip-corrupt")).bytes);
  EXPECT_EQ(header(bad, "Content-Encoding"), "gzip");
  EXPECT_EQ(inflate_all(bad.body, 31).rfind("inflate error", 0), 0u);
}

TEST(FaultServer, FramingFaults) {
  fault_server srv;
  EXPECT_EQ(parse(exchange(srv.port(), get("/chunked")).bytes).body, fault_server::chunked_text());
  const raw_result cd = exchange(srv.port(), get("/close-delimited", ""));
  EXPECT_EQ(cd.end, "eof");
  EXPECT_EQ(parse(cd.bytes).body, fault_server::close_delimited_text());
  EXPECT_THROW(parse(exchange(srv.port(), get("/bad-chunked")).bytes), http::protocol_error);
  const raw_result ms = exchange(srv.port(), get("/malformed-status", ""));
  EXPECT_EQ(ms.bytes, "HTTP/1.1 2x0 OK\r\n\r\n");
  EXPECT_EQ(ms.end, "eof");
  const raw_result ca = exchange(srv.port(), get("/close-after", ""));
  EXPECT_EQ(ca.end, "eof");
  EXPECT_EQ(header(parse(ca.bytes), "Connection"), "close");
}

TEST(FaultServer, StatusRedirectsSizesAndNotFound) {
  fault_server srv;
  const http::response st = parse(exchange(srv.port(), get("/status?code=503&retry_after=7")).bytes);
  EXPECT_EQ(st.status, 503);
  EXPECT_EQ(st.body, "status 503");
  EXPECT_EQ(header(st, "Retry-After"), "7");

  const http::response r2 = parse(exchange(srv.port(), get("/redirect?n=2")).bytes);
  EXPECT_EQ(r2.status, 302);
  EXPECT_EQ(header(r2, "Location"), "/redirect?n=1");
  EXPECT_EQ(parse(exchange(srv.port(), get("/redirect?n=0")).bytes).body, "arrived");
  EXPECT_EQ(header(parse(exchange(srv.port(), get("/redirect-loop")).bytes), "Location"), "/redirect-loop");
  const std::string abs = "/redirect-abs?to=http%3A%2F%2Fexample.test%2Fx%3Fy%3D1";
  EXPECT_EQ(header(parse(exchange(srv.port(), get(abs)).bytes), "Location"), "http://example.test/x?y=1");

  EXPECT_EQ(parse(exchange(srv.port(), get("/big?bytes=300000")).bytes).body, std::string(300000, 'x'));
  const raw_result huge = exchange(srv.port(), get("/huge-headers?kb=100"));
  EXPECT_GE(huge.bytes.find("\r\n\r\n"), 100u * 1024);
  EXPECT_EQ(parse(huge.bytes).body, "ok");

  EXPECT_EQ(parse(exchange(srv.port(), get("/nowhere")).bytes).status, 404);
  EXPECT_EQ(parse(exchange(srv.port(), get("/status?code=abc")).bytes).status, 400);
}

TEST(FaultServer, DelayAnswersAfterTheWait) {
  fault_server srv;
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(parse(exchange(srv.port(), get("/delay?ms=50")).bytes).body, "ok");
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 50ms);
}

// Reads until a chunk has arrived, closes, and checks that the server
// notices (its connection task ends) well before the 30 s bound.
void check_streaming_stops_when_peer_closes(std::string_view target, std::string_view marker) {
  fault_server srv;
  auto client = [&]() -> task<bool> {
    net::tcp_stream s = co_await net::connect(net::socket_address::loopback_v4(srv.port()));
    const std::string request = get(target, "");
    co_await s.write_all(request);
    std::string got;
    char buf[4096];
    for (std::size_t i = 0; i < max_reads && got.find(marker) == std::string::npos; ++i) {
      const std::size_t n = co_await s.read_some(std::span<char>(buf));
      if (n == 0) co_return false;
      got.append(buf, n);
    }
    co_return true;  // `s` closes here
  };
  EXPECT_TRUE(run_bounded(client()));
  EXPECT_TRUE(srv.wait_open_connections_at_most(0, 10s));
}

TEST(FaultServer, TrickleStopsWhenThePeerCloses) {
  check_streaming_stops_when_peer_closes("/trickle?interval_ms=5", "tick");
}

TEST(FaultServer, SlowHeadersStopWhenThePeerCloses) {
  check_streaming_stops_when_peer_closes("/slow-headers?interval_ms=5", "X-Slow-1:");
}

// One TLS request to the server's TLS port, pinned to its certificate:
// the body, or the error's kind and message.
std::string tls_get(const fault_server& srv, std::string_view target) {
  auto client = [&]() -> task<std::string> {
    net::tls_client_options opts;
    opts.ca_file = srv.ca_file();
    net::tls_context ctx = net::tls_context::client(opts);
    std::string result;
    try {
      net::tcp_stream tcp = co_await net::connect(net::socket_address::loopback_v4(srv.tls_port()));
      net::tls_stream s = co_await net::tls_stream::connect(std::move(tcp), ctx, "localhost");
      const std::string request = get(target);
      co_await s.write_all(request);
      std::string bytes;
      char buf[16 * 1024];
      for (std::size_t i = 0; i < max_reads; ++i) {
        const std::size_t n = co_await s.read_some(std::span<char>(buf));
        if (n == 0) break;
        bytes.append(buf, n);
      }
      result = parse(bytes).body;
    } catch (const error& e) {
      result = std::string(e.kind()) + ": " + e.what();
    }
    co_return result;
  };
  return run_bounded(client());
}

TEST(FaultServer, TlsPortAnswersAPinnedClient) {
  fault_server_options opts;
  opts.tls = true;
  fault_server srv(opts);
  EXPECT_EQ(srv.tls_base_url(), "https://localhost:" + std::to_string(srv.tls_port()));
  EXPECT_FALSE(srv.ca_file().empty());
  EXPECT_EQ(tls_get(srv, "/ok"), "ok");
  EXPECT_EQ(tls_get(srv, "/chunked"), fault_server::chunked_text());
  EXPECT_EQ(srv.requests_served(), 2u);
}

TEST(FaultServer, TlsWrongNameAndExpiredCertificatesFailVerification) {
  fault_server_options wrong;
  wrong.tls = true;
  wrong.cert = fault_server_options::cert_kind::wrong_name;
  fault_server a(wrong);
  const std::string ra = tls_get(a, "/ok");
  EXPECT_EQ(ra.rfind("tls: ", 0), 0u) << ra;
  EXPECT_NE(ra.find("hostname mismatch"), std::string::npos) << ra;

  fault_server_options expired;
  expired.tls = true;
  expired.cert = fault_server_options::cert_kind::expired;
  fault_server b(expired);
  const std::string rb = tls_get(b, "/ok");
  EXPECT_NE(rb.find("certificate has expired"), std::string::npos) << rb;
  EXPECT_EQ(a.requests_served() + b.requests_served(), 0u);
}

TEST(FaultServer, DestructorWithOpenConnectionsIsPromptAndLeavesNothingBehind) {
  {
    // Warm up first: the process-wide stall monitor thread (started by the
    // first loop with a watchdog, never stopped) and lazily built statics
    // must not count against the server.
    fault_server warm;
    EXPECT_EQ(exchange(warm.port(), get("/ok")).end, "eof");
  }
  const std::size_t fds_before = open_fd_count();
  const std::size_t threads_before = thread_count();
  {
    background_loop client({.loop = {.name = "fs-client"}});
    auto srv = std::make_unique<fault_server>();
    const std::uint16_t port = srv->port();
    std::promise<void> trickling;
    std::future<void> started = trickling.get_future();
    // An idle keep-alive connection (one request served) and one in the
    // middle of a /trickle; each must see the server go.
    portal_future<std::string> ended = client.portal().submit([port, &trickling]() -> task<std::string> {
      net::tcp_stream idle = co_await net::connect(net::socket_address::loopback_v4(port));
      std::string in;
      const std::string ok = get("/ok", "");
      co_await idle.write_all(ok);
      co_await read_response(idle, in);
      net::tcp_stream s = co_await net::connect(net::socket_address::loopback_v4(port));
      const std::string request = get("/trickle?interval_ms=10", "");
      co_await s.write_all(request);
      std::string got;
      char buf[4096];
      for (std::size_t i = 0; i < max_reads && got.find("tick") == std::string::npos; ++i) {
        const std::size_t n = co_await s.read_some(std::span<char>(buf));
        if (n == 0) co_return "eof before the first tick";
        got.append(buf, n);
      }
      trickling.set_value();
      std::string how;
      net::tcp_stream* const conns[] = {&idle, &s};
      for (net::tcp_stream* c : conns) {
        const raw_result rest = co_await with_timeout(10s, exchange_on(*c, ""));
        how += rest.end + ";";
      }
      co_return how;
    });
    ASSERT_EQ(started.wait_for(10s), std::future_status::ready);
    EXPECT_EQ(srv->open_connections(), 2u);
    const auto t0 = std::chrono::steady_clock::now();
    srv.reset();
    // Bounded, not a speed: a server that waited for the trickle (30 s) or
    // for its own timeouts (5 s) would fail this.
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
    ASSERT_EQ(ended.wait_for(15s), std::future_status::ready);
    const std::string how = ended.get();
    EXPECT_TRUE(how == "eof;eof;" || how.find("connection_error") != std::string::npos) << how;
    client.stop();
  }
  EXPECT_EQ(open_fd_count(), fds_before);
  EXPECT_EQ(thread_count(), threads_before);
}

}  // namespace
}  // namespace spindle::test
