// The HTTP client's misbehaving-server suite: a raw_server
// (tests/support/raw_server.hpp) scripts every byte a server sends, and
// each test checks the exact error kind the client reports, that the
// faulty connection is not reused, that a follow-up request on the same
// client still works, and that no descriptor leaks.
//
// The tests here are guards: cases the client handles today and must keep
// handling (framing errors, oversized heads, bad certificates, resets, cuts).
// The raw_server's own tests come first.
#include "support/raw_server.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <future>
#include <mutex>
#include <string>
#include <vector>

#include "spindle/event_loop.hpp"
#include "spindle/http/client.hpp"
#include "support/fault_server.hpp"
#include "support/test_support.hpp"

namespace spindle::http {
namespace {

using namespace std::chrono_literals;
using test::raw_connection;
using test::raw_server;

// ---- a plain client socket, for the server's own tests --------------------------

class plain_socket {
 public:
  explicit plain_socket(std::uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    connected_ = fd_ >= 0 && ::connect(fd_, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0;
  }
  ~plain_socket() {
    if (fd_ >= 0) ::close(fd_);
  }
  plain_socket(const plain_socket&) = delete;
  plain_socket& operator=(const plain_socket&) = delete;

  [[nodiscard]] bool connected() const { return connected_; }
  bool send_all(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  // Everything until the peer closes: the text, then "<EOF>" or "<RST>";
  // "<TIMEOUT>" if it has not closed within `limit`.
  std::string read_to_end(std::chrono::milliseconds limit = 5000ms) {
    std::string out;
    const auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd p{fd_, POLLIN, 0};
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return out + "<TIMEOUT>";
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n > 0) {
        out.append(buf, static_cast<std::size_t>(n));
      } else if (n == 0) {
        return out + "<EOF>";
      } else if (errno == ECONNRESET) {
        return out + "<RST>";
      } else if (errno != EINTR) {
        return out + "<ERROR>";
      }
    }
  }

 private:
  int fd_;
  bool connected_ = false;
};

// ---- raw_server ---------------------------------------------------------------------

TEST(RawServer, AnswersARawRequestFromAPlainSocket) {
  const std::string head =
      "GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: curl/8.0\r\nAccept: */*\r\n\r\n";
  std::promise<std::size_t> index;
  raw_server s([&](raw_connection& c) {
    index.set_value(c.index());
    if (c.read_request()) c.write("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
  });
  EXPECT_EQ(s.base_url(), "http://127.0.0.1:" + std::to_string(s.port()));
  plain_socket sock(s.port());
  ASSERT_TRUE(sock.connected());
  ASSERT_TRUE(sock.send_all(head));
  EXPECT_EQ(sock.read_to_end(),
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello<EOF>");
  EXPECT_EQ(index.get_future().get(), 0u);
  EXPECT_EQ(s.connections(), 1u);
  EXPECT_EQ(s.requests(), std::vector<std::string>{head});
}

TEST(RawServer, ReadsBodiesAndKeepsPipelinedBytes) {
  std::promise<std::vector<std::string>> seen;
  raw_server s([&](raw_connection& c) {
    std::vector<std::string> got;
    for (int i = 0; i < 2; ++i) got.push_back(c.read_request().value_or("<none>"));
    c.wait_closed(5000ms);  // keeps what arrives meanwhile
    got.push_back(c.peer_sent_after());
    seen.set_value(got);
  });
  {
    plain_socket sock(s.port());
    ASSERT_TRUE(sock.connected());
    ASSERT_TRUE(
        sock.send_all("POST /a HTTP/1.1\r\ncontent-length:  3 \r\n\r\nabcGET /b HTTP/1.1\r\n\r\nextra"));
  }
  auto f = seen.get_future();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  const std::vector<std::string> expected{"POST /a HTTP/1.1\r\ncontent-length:  3 \r\n\r\nabc",
                                          "GET /b HTTP/1.1\r\n\r\n", "extra"};
  EXPECT_EQ(f.get(), expected);
  EXPECT_EQ(s.requests(), (std::vector<std::string>{"POST /a HTTP/1.1\r\ncontent-length:  3 \r\n\r\n",
                                                    "GET /b HTTP/1.1\r\n\r\n"}));
}

TEST(RawServer, ResetAndFinReachThePeer) {
  std::promise<bool> peer_closed;
  raw_server s([&](raw_connection& c) {
    if (c.index() == 0) {
      c.read_request();
      c.reset();
      return;
    }
    c.write("partial");
    c.shutdown_write();
    peer_closed.set_value(c.wait_closed(5000ms));
  });
  {
    plain_socket a(s.port());
    ASSERT_TRUE(a.send_all("GET / HTTP/1.1\r\n\r\n"));
    EXPECT_EQ(a.read_to_end(), "<RST>");
  }
  {
    plain_socket b(s.port());
    EXPECT_EQ(b.read_to_end(), "partial<EOF>");
  }
  EXPECT_TRUE(peer_closed.get_future().get());
  EXPECT_TRUE(s.wait_idle(5000ms));
}

TEST(RawServer, DestructorWakesABlockedHandlerAndClosesEverything) {
  const std::size_t fds_before = test::open_fd_count();
  std::promise<void> entered;
  std::promise<bool> read_something;
  {
    raw_server s([&](raw_connection& c) {
      entered.set_value();
      read_something.set_value(c.read_request(60'000ms).has_value());  // woken by the destructor
    });
    plain_socket sock(s.port());
    ASSERT_EQ(entered.get_future().wait_for(5s), std::future_status::ready);
    // The socket outlives the server: the destructor must not wait for it.
  }
  EXPECT_FALSE(read_something.get_future().get());
  EXPECT_EQ(test::open_fd_count(), fds_before);
}

TEST(RawServer, ConnectionsOverTheLimitAreClosedAtOnce) {
  std::mutex m;
  std::condition_variable cv;
  std::size_t started = 0;
  raw_server s([&](raw_connection& c) {
    {
      const std::lock_guard lock(m);
      ++started;
    }
    cv.notify_all();
    c.wait_closed(30'000ms);  // until the test closes its socket
  });
  std::vector<std::unique_ptr<plain_socket>> held;
  for (std::size_t i = 0; i < raw_server::max_connections; ++i) {
    held.push_back(std::make_unique<plain_socket>(s.port()));
    ASSERT_TRUE(held.back()->connected());
  }
  {
    std::unique_lock lock(m);
    ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return started == raw_server::max_connections; }));
  }
  plain_socket extra(s.port());
  EXPECT_EQ(extra.read_to_end(), "<EOF>");
  EXPECT_EQ(s.connections(), raw_server::max_connections + 1);
  held.clear();
  EXPECT_TRUE(s.wait_idle(5000ms));
}

// ---- the client against scripted servers ------------------------------------------

constexpr std::string_view ok_response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

// What a script does with a request other than "GET /ok".
using fault_script = std::function<void(raw_connection&, const std::string& request)>;

// Answers "GET /ok" with 200 "ok" on any connection, keeping it alive;
// any other request runs `fault`. The connection is closed when `fault`
// returns, unless `keep_serving` (then it serves /ok again).
raw_server::handler scripted(fault_script fault, bool keep_serving = false) {
  return [fault = std::move(fault), keep_serving](raw_connection& c) {
    while (auto req = c.read_request()) {
      if (req->starts_with("GET /ok ")) {
        if (!c.write(ok_response)) return;
        continue;
      }
      fault(c, *req);
      if (!keep_serving) return;
    }
  };
}

// Writes `text`, then waits for the client to close (bounded).
fault_script send_and_wait(std::string text) {
  return [text = std::move(text)](raw_connection& c, const std::string&) {
    c.write(text);
    c.wait_closed(10'000ms);
  };
}

// Writes `text`; the connection is then closed (FIN) unless the script
// keeps serving.
fault_script send_text(std::string text) {
  return [text = std::move(text)](raw_connection& c, const std::string&) { c.write(text); };
}

client_options quick_options() {
  client_options o;
  o.connect_timeout = 5s;
  o.header_timeout = 5s;
  o.request_timeout = 5s;
  return o;
}

struct outcome {
  std::string result;   // "ok <status> <body size>" or the error's kind
  std::string message;  // the error's what()
  std::uint64_t created = 0;
  bool follow_up_ok = false;
};

// Sends GET `path` to `s` on a new client, then GET /ok on the same client
// (which `s` must answer): whatever the first request did, the follow-up
// must work; `created` shows whether it needed a new connection. No
// descriptor may be left open afterwards, on either side.
outcome run(raw_server& s, const std::string& path, const client_options& opts, request_options ro = {}) {
  EXPECT_TRUE(s.wait_idle(5000ms));
  const std::size_t fds_before = test::open_fd_count();
  outcome out;
  {
    event_loop loop;
    auto main = [&]() -> task<void> {
      client c(opts);
      // Named, not temporaries inside the co_await (g++ 12; DEVELOPERS.md).
      const std::string target = s.base_url() + path;
      const std::string ok = s.base_url() + "/ok";
      try {
        response r = co_await c.get(target, ro);
        out.result = "ok " + std::to_string(r.status) + " " + std::to_string(r.body.size());
      } catch (const error& e) {
        out.result = e.kind();
        out.message = e.what();
      }
      try {
        response again = co_await c.get(ok);
        out.follow_up_ok = again.status == 200 && again.body == "ok";
      } catch (const error& e) {
        ADD_FAILURE() << "follow-up: " << e.kind() << ": " << e.what();
      }
      out.created = c.statistics().created;
    };
    loop.run(main());
  }
  EXPECT_TRUE(s.wait_idle(5000ms)) << path;
  EXPECT_EQ(test::open_fd_count(), fds_before) << path;
  return out;
}

outcome run(raw_server& s, const std::string& path) {
  const client_options opts = quick_options();
  return run(s, path, opts);
}

// A fault whose connection must not be reused: `kind`, a fresh connection
// for the follow-up, which works.
void expect_fault(const outcome& o, const char* kind) {
  EXPECT_EQ(o.result, kind) << o.message;
  EXPECT_EQ(o.created, 2u);
  EXPECT_TRUE(o.follow_up_ok);
}

TEST(Misbehaving, ClientSendsExactlyItsOwnHeaders) {
  raw_server s(scripted(send_text("")));
  const outcome o = run(s, "/ok");
  EXPECT_EQ(o.result, "ok 200 2");
  EXPECT_EQ(o.created, 1u);  // kept alive for the follow-up
  const std::vector<std::string> seen = s.requests();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0], seen[1]);
  // The request line, then these header fields in any order, and no other.
  const std::string host = "Host: 127.0.0.1:" + std::to_string(s.port());
  std::vector<std::string> lines;
  for (std::size_t at = 0; at < seen[0].size();) {
    const std::size_t end = seen[0].find("\r\n", at);
    lines.push_back(seen[0].substr(at, end - at));
    at = end + 2;
  }
  ASSERT_GE(lines.size(), 2u);
  EXPECT_EQ(lines.front(), "GET /ok HTTP/1.1");
  EXPECT_EQ(lines.back(), "");
  // Host and User-Agent exactly; Accept-Encoding lists at least gzip
  // (the codings offered grow with the decoder).
  std::vector<std::string> names;
  for (auto it = lines.begin() + 1; it != lines.end() - 1; ++it) {
    const std::size_t colon = it->find(": ");
    ASSERT_NE(colon, std::string::npos) << *it;
    names.push_back(it->substr(0, colon));
    if (names.back() == "Host") {
      EXPECT_EQ(*it, host);
    } else if (names.back() == "User-Agent") {
      EXPECT_EQ(*it, "User-Agent: spindle/0.1");
    } else if (names.back() == "Accept-Encoding") {
      EXPECT_NE(it->find("gzip"), std::string::npos) << *it;
    }
  }
  std::sort(names.begin(), names.end());
  const std::vector<std::string> expected{"Accept-Encoding", "Host", "User-Agent"};
  EXPECT_EQ(names, expected);
}

TEST(Misbehaving, ContentLengthWithChunkedIsAProtocolError) {
  // RFC 9112 §6.1: a server must not send both; a client must either fail
  // or frame by chunked and then close the connection. The client fails
  // (llhttp: "Content-Length can't be present with Transfer-Encoding"),
  // in either order, and does not reuse the connection (the script would
  // serve /ok on it: created == 2 shows it was not asked to).
  for (const char* fields : {"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
                             "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n"}) {
    SCOPED_TRACE(fields);
    raw_server s(scripted(
        send_text(std::string("HTTP/1.1 200 OK\r\n") + fields + "\r\n5\r\nhello\r\n0\r\n\r\n"), true));
    const outcome o = run(s, "/both");
    expect_fault(o, "protocol");
    EXPECT_NE(o.message.find("Transfer-Encoding"), std::string::npos) << o.message;
  }
}

TEST(Misbehaving, InvalidContentLengthIsAProtocolError) {
  for (const char* value : {"-1", "abc", "1, 2", "1 2", "+5", "0x10", "5.0", ""}) {
    SCOPED_TRACE(value);
    raw_server s(scripted(
        send_and_wait(std::string("HTTP/1.1 200 OK\r\nContent-Length: ") + value + "\r\n\r\nhello")));
    expect_fault(run(s, "/bad-length"), "protocol");
  }
  raw_server twice(
      scripted(send_and_wait("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")));
  expect_fault(run(twice, "/two-lengths"), "protocol");
}

TEST(Misbehaving, OverflowingContentLengthFailsBeforeAnyBody) {
  // The server sends the head only and waits: the length alone must fail
  // the request (a "timeout" would mean the client waited for the body).
  for (const char* value : {"99999999999999999999", "18446744073709551616"}) {
    SCOPED_TRACE(value);
    raw_server s(
        scripted(send_and_wait(std::string("HTTP/1.1 200 OK\r\nContent-Length: ") + value + "\r\n\r\n")));
    expect_fault(run(s, "/huge"), "protocol");
  }
}

// A length announced beyond max_response_bytes (a Content-Length, a chunk
// size) fails the request at once, as nginx answers 413 at once: the client
// does not wait for a body it would refuse ("timeout" after 5 s before).
TEST(Misbehaving, AnnouncedLengthOverTheLimitFailsBeforeTheBody) {
  const client_options opts = quick_options();
  request_options small;
  small.max_response_bytes = 1000;
  raw_server over(scripted(send_and_wait("HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n")));
  expect_fault(run(over, "/over", opts, small), "protocol");
  // 2^63: no overflow in llhttp's 64-bit length, but far over the default limit.
  raw_server huge(scripted(send_and_wait("HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775808\r\n\r\n")));
  expect_fault(run(huge, "/huge"), "protocol");
  raw_server chunk(scripted(
      send_and_wait("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7fffffffffffffff\r\nhello")));
  expect_fault(run(chunk, "/huge-chunk"), "protocol");
}

// Writes header lines (after `start`) until the client goes away, the
// server stops, or 10 s passed.
fault_script endless(std::string start, std::string line) {
  return [start = std::move(start), line = std::move(line)](raw_connection& c, const std::string&) {
    const auto until = std::chrono::steady_clock::now() + 10s;
    if (!c.write(start)) return;
    while (!c.stopping() && std::chrono::steady_clock::now() < until)
      if (!c.write(line)) return;
  };
}

TEST(Misbehaving, EndlessHeadersHitMaxHeaderBytes) {
  raw_server s(scripted(endless("HTTP/1.1 200 OK\r\n", "X-Filler: 0123456789abcdef0123456789abcdef\r\n")));
  client_options opts = quick_options();
  opts.max_header_bytes = 16 * 1024;
  const outcome small = run(s, "/endless", opts);
  expect_fault(small, "protocol");
  EXPECT_NE(small.message.find("headers exceed 16384 bytes"), std::string::npos) << small.message;
  // And with the default limit (64 KiB).
  expect_fault(run(s, "/endless"), "protocol");
}

TEST(Misbehaving, EndlessStatusLineHitsMaxHeaderBytes) {
  // The reason phrase never ends: no CRLF ever.
  raw_server s(scripted(endless("HTTP/1.1 200 ", std::string(1024, 'O'))));
  const outcome o = run(s, "/endless-status");
  expect_fault(o, "protocol");
  EXPECT_NE(o.message.find("headers exceed"), std::string::npos) << o.message;
  // Nothing like a status line at all: fails at its first bytes.
  raw_server junk(scripted(endless("", std::string(1024, 'x'))));
  expect_fault(run(junk, "/junk"), "protocol");
}

TEST(Misbehaving, ResetBeforeTheResponseOnAFreshConnection) {
  raw_server s(scripted([](raw_connection& c, const std::string&) { c.reset(); }));
  const outcome o = run(s, "/reset");
  // net/errors.hpp: a connection that died is a "connect" problem (connection_error).
  expect_fault(o, "connect");
  EXPECT_EQ(s.connections(), 2u);  // no retry: the connection was not a pooled one
}

// Answers /ok, and resets on "/flaky" when the connection has carried a
// request before (a pooled connection the server dropped), else answers it.
raw_server::handler flaky_when_reused() {
  return [](raw_connection& c) {
    for (int served = 0;; ++served) {
      const std::optional<std::string> req = c.read_request();
      if (!req) return;
      if (req->find(" /flaky ") != std::string::npos && served > 0) {
        c.reset();
        return;
      }
      if (!c.write(ok_response)) return;
    }
  };
}

TEST(Misbehaving, ResetOnAReusedConnectionRetriesOnlyIdempotentRequestsOnce) {
  for (const std::string method : {"GET", "POST"}) {
    SCOPED_TRACE(method);
    raw_server s(flaky_when_reused());
    event_loop loop;
    auto main = [&]() -> task<std::string> {
      const client_options opts = quick_options();
      client c(opts);
      const std::string ok = s.base_url() + "/ok";
      const std::string flaky = s.base_url() + "/flaky";
      response first = co_await c.get(ok);
      EXPECT_EQ(first.status, 200);
      std::string result;
      try {
        response r = co_await c.send(method, flaky);
        result = "ok " + std::to_string(r.status);
      } catch (const error& e) {
        result = e.kind();
      }
      co_return result + " created=" + std::to_string(c.statistics().created);
    };
    const std::string result = loop.run(main());
    const std::size_t flaky_sent = std::ranges::count_if(
        s.requests(), [](const std::string& r) { return r.find(" /flaky ") != r.npos; });
    if (method == "GET") {
      EXPECT_EQ(result, "ok 200 created=2");  // one retry, on a fresh connection
      EXPECT_EQ(flaky_sent, 2u);
    } else {
      EXPECT_EQ(result, "connect created=1");  // not repeated: it may have had an effect
      EXPECT_EQ(flaky_sent, 1u);
    }
  }
}

TEST(Misbehaving, ConnectionClosedMidMessageIsAProtocolError) {
  const char* const cuts[] = {
      // In the headers.
      "HTTP/1.1 200 OK\r\nContent-Le",
      // Content-Length 100, 10 bytes of it.
      "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789",
      // Chunked: inside a chunk, between chunks, inside a size line, before the trailer's end.
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n01234",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n",
  };
  for (const char* cut : cuts) {
    SCOPED_TRACE(cut);
    raw_server s(scripted(send_text(cut)));
    expect_fault(run(s, "/cut"), "protocol");
  }
}

TEST(Misbehaving, BadCertificatesAreTlsErrors) {
  // HttpFault.TlsCertificateChecks covers the self-signed certificate
  // against the system store (kind "tls") and the messages of these two;
  // here: their kind, and that the client still works afterwards.
  using cert = test::fault_server_options::cert_kind;
  raw_server plain(scripted(send_text("")));
  for (const cert kind : {cert::wrong_name, cert::expired}) {
    test::fault_server_options fo;
    fo.tls = true;
    fo.cert = kind;
    test::fault_server tls(fo);
    client_options opts = quick_options();
    opts.ca_file = tls.ca_file();
    event_loop loop;
    auto main = [&]() -> task<std::string> {
      client c(opts);
      const std::string secure_url = tls.tls_base_url() + "/ok";
      const std::string plain_url = plain.base_url() + "/ok";
      std::string result;
      try {
        co_await c.get(secure_url);
        result = "ok";
      } catch (const error& e) {
        result = e.kind();
      }
      response again = co_await c.get(plain_url);
      co_return result + " then " + std::to_string(again.status);
    };
    EXPECT_EQ(loop.run(main()), "tls then 200") << static_cast<int>(kind);
  }
}

}  // namespace
}  // namespace spindle::http
