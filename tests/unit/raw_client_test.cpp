// The test-side raw_client and server_process (tests/support/raw_client.hpp),
// checked against the scripted raw_server before the adversarial server
// suite relies on them.
#include "support/raw_client.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/raw_server.hpp"

namespace spindle::test {
namespace {

using namespace std::chrono_literals;

// A server that answers the first request on each connection with `reply`
// and then closes.
raw_server::handler answer(std::string reply) {
  return [reply](raw_connection& c) {
    if (c.read_request()) c.write(reply);
  };
}

constexpr std::string_view get = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

TEST(RawClient, ReadsAContentLengthResponse) {
  raw_server server(answer("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Two: a\r\nx-two: b\r\n\r\nhello"));
  raw_client c = raw_client::connect(server.port());
  ASSERT_TRUE(c.send_slowly(get, 7, 1ms));
  const std::optional<http_reply> r = c.read_response(5s);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->version, "HTTP/1.1");
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->reason, "OK");
  EXPECT_EQ(r->body, "hello");
  EXPECT_FALSE(r->chunked);
  EXPECT_EQ(r->header("CONTENT-length"), "5");
  EXPECT_EQ(r->header("x-two"), "a, b");
  EXPECT_EQ(r->header("missing"), std::nullopt);
  ASSERT_EQ(r->headers.size(), 3u);
  EXPECT_EQ(server.requests(), std::vector<std::string>{std::string(get)});
  EXPECT_TRUE(c.closed_by_peer(5s));
  EXPECT_TRUE(c.eof());
  EXPECT_FALSE(c.reset());
}

TEST(RawClient, DecodesChunksAndSkipsTheTrailer) {
  // A 204 follows in the same write: the trailer must be consumed exactly.
  raw_server server(
      answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
             "5;ext=1\r\nhello\r\nA\r\n, chunked!\r\n0\r\nX-Trailer: yes\r\n\r\n"
             "HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n"));
  raw_client c = raw_client::connect(server.port());
  ASSERT_TRUE(c.send(get));
  const std::optional<http_reply> r = c.read_response(5s);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->chunked);
  EXPECT_EQ(r->body, "hello, chunked!");
  const std::optional<http_reply> next = c.read_response(5s);
  ASSERT_TRUE(next);
  EXPECT_EQ(next->status, 204);  // no body despite the Content-Length
  EXPECT_EQ(next->body, "");
}

TEST(RawClient, ReadsABodyDelimitedByTheClose) {
  raw_server server(answer("HTTP/1.0 200 OK\r\nServer: raw\r\n\r\nuntil the end"));
  raw_client c = raw_client::connect(server.port());
  ASSERT_TRUE(c.send(get));
  const std::optional<http_reply> r = c.read_response(5s);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->version, "HTTP/1.0");
  EXPECT_EQ(r->body, "until the end");
  EXPECT_TRUE(c.eof());
  EXPECT_EQ(c.read_response(100ms), std::nullopt);  // nothing more
}

TEST(RawClient, Returns100ContinueThenTheFinalResponse) {
  raw_server server(answer("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
  raw_client c = raw_client::connect(server.port());
  ASSERT_TRUE(c.send(get));
  const std::optional<http_reply> interim = c.read_response(5s);
  ASSERT_TRUE(interim);
  EXPECT_EQ(interim->status, 100);
  EXPECT_EQ(interim->reason, "Continue");
  EXPECT_EQ(interim->body, "");
  const std::optional<http_reply> final_reply = c.read_response(5s);
  ASSERT_TRUE(final_reply);
  EXPECT_EQ(final_reply->status, 200);
  EXPECT_EQ(final_reply->body, "ok");
}

TEST(RawClient, SplitsTwoPipelinedResponsesFromOneRead) {
  raw_server server([](raw_connection& conn) {
    if (!conn.read_request() || !conn.read_request()) return;
    conn.write(  // both in one write
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none"
        "HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\ntwo");
    conn.wait_closed(5s);
  });
  raw_client c = raw_client::connect(server.port());
  ASSERT_TRUE(c.send(std::string(get) + std::string(get)));
  const std::optional<http_reply> first = c.read_response(5s);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->body, "one");
  const std::optional<http_reply> second = c.read_response(0ms);  // from the kept bytes only
  ASSERT_TRUE(second);
  EXPECT_EQ(second->status, 404);
  EXPECT_EQ(second->reason, "Not Found");
  EXPECT_EQ(second->body, "two");
  EXPECT_EQ(c.read_some(0ms), "");
  EXPECT_FALSE(c.closed());
}

TEST(RawClient, ThrowsOnAMalformedResponse) {
  raw_server server(answer("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello"));
  raw_client c = raw_client::connect(server.port());
  ASSERT_TRUE(c.send(get));
  EXPECT_THROW(c.read_response(5s), std::runtime_error);
}

TEST(RawClient, ClosedByPeerSeesFinAndRstButNotSilence) {
  raw_server server([](raw_connection& conn) {
    if (!conn.read_request()) return;
    if (conn.index() == 0)
      conn.write("some bytes first");  // then a FIN
    else if (conn.index() == 1)
      conn.reset();
    else
      conn.wait_closed(5s);
  });
  raw_client fin = raw_client::connect(server.port());
  ASSERT_TRUE(fin.send(get));
  EXPECT_TRUE(fin.closed_by_peer(5s));
  EXPECT_TRUE(fin.eof());
  raw_client rst = raw_client::connect(server.port());
  ASSERT_TRUE(rst.send(get));
  EXPECT_TRUE(rst.closed_by_peer(5s));
  EXPECT_TRUE(rst.reset());
  raw_client silent = raw_client::connect(server.port());
  ASSERT_TRUE(silent.send(get));
  EXPECT_FALSE(silent.closed_by_peer(100ms));
  EXPECT_FALSE(silent.closed());
}

// A child that listens on 127.0.0.1 (never accepting: the kernel completes
// connections into the backlog), reports `report(port)` and waits for SIGTERM.
void listen_and_wait(int report_fd, std::function<std::uint16_t(std::uint16_t port)> report) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 16) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    throw std::runtime_error("bind/listen failed");
  server_process::report_port(report_fd, report(ntohs(a.sin_port)));
  for (;;) ::pause();
}

TEST(ServerProcess, ReportsItsPortAndStopsOnSigterm) {
  server_process child = server_process::start(
      [](int report_fd) { listen_and_wait(report_fd, [](std::uint16_t port) { return port; }); });
  ASSERT_GT(child.pid(), 0);
  ASSERT_NE(child.port(), 0);
  raw_client c = raw_client::connect(child.port());
  EXPECT_GT(child.rss_bytes(), 0u);
  const int status = child.stop();
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) << status;
  EXPECT_EQ(child.pid(), -1);
  EXPECT_EQ(child.rss_bytes(), 0u);
  EXPECT_EQ(child.stop(), -1);
}

TEST(ServerProcess, AppliesTheDescriptorLimitInTheChildOnly) {
  rlimit mine{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &mine), 0);
  server_process child = server_process::start(
      [](int report_fd) {
        listen_and_wait(report_fd, [](std::uint16_t) {
          rlimit r{};
          ::getrlimit(RLIMIT_NOFILE, &r);
          return static_cast<std::uint16_t>(r.rlim_cur);  // reported in place of the port
        });
      },
      64);
  EXPECT_EQ(child.port(), 64);
  rlimit after{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &after), 0);
  EXPECT_EQ(after.rlim_cur, mine.rlim_cur);
}

TEST(ServerProcess, ThrowsWithTheStatusOfAChildThatFails) {
  try {
    server_process::start([](int) { throw std::runtime_error("no port today"); });
    FAIL() << "start() returned";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("ended before reporting its port; it exited with status 3"),
              std::string::npos)
        << e.what();
  }
}

TEST(ServerProcess, RaiseNofileLimitStopsAtTheHardLimit) {
  rlimit r{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &r), 0);
  EXPECT_NO_THROW(raise_nofile_limit(r.rlim_cur));  // already there: a no-op
  if (r.rlim_max == RLIM_INFINITY) GTEST_SKIP() << "no hard limit to exceed";
  EXPECT_THROW(raise_nofile_limit(r.rlim_max + 1), std::runtime_error);
}

}  // namespace
}  // namespace spindle::test
