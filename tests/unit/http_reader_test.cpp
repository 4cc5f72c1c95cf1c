// message_reader over a real loopback connection: its own read buffer
// (grown for large bodies), the bytes of a pipelined next message kept,
// parse_buffered() without I/O; and tcp_stream::try_write.

#include <gtest/gtest.h>

#include <string>

#include "spindle/cancel_scope.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/http/connection.hpp"
#include "spindle/net/tcp.hpp"
#include "spindle/sleep.hpp"

namespace spindle::http {
namespace {

using namespace std::chrono_literals;

// A connected pair on 127.0.0.1: `out` writes what `in` reads.
struct pair {
  net::tcp_stream in, out;
};

task<pair> connected_pair() {
  net::tcp_listener l = net::tcp_listener::bind(net::socket_address::loopback_v4(0));
  auto accepted = event_loop::current()->spawn(l.accept(), "accept");
  pair p;
  p.in = co_await net::connect(l.local_address());
  p.out = co_await accepted;
  co_return p;
}

std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
  return s;
}

std::string response_text(const std::string& body) {
  return "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

TEST(MessageReader, LargeBodyThenAPipelinedResponseInTheSameWrite) {
  event_loop loop;
  auto main = [&]() -> task<void> {
    pair p = co_await connected_pair();
    const std::string big = pattern(300 * 1000);  // past the buffer's 64 KiB ceiling
    const std::string wire = response_text(big) + response_text("second");
    auto writer = loop.spawn(p.out.write_all(std::string_view(wire)), "writer");
    stream s(std::move(p.in));
    message_reader reader(message_parser::kind::response);
    EXPECT_TRUE(co_await reader.wait_for_data(s, time_point::max()));
    if (!reader.parse_buffered()) co_await reader.read_message(s, time_point::max(), "body");
    EXPECT_TRUE(reader.parser().complete());
    const response& first = reader.parser().response_message();
    EXPECT_EQ(first.status, 200);
    EXPECT_EQ(first.body.size(), big.size());
    EXPECT_TRUE(first.body == big);
    co_await std::move(writer);
    reader.next();
    // The second response: already buffered after the first, or still to read.
    EXPECT_TRUE(co_await reader.wait_for_data(s, time_point::max()));
    if (!reader.parse_buffered()) co_await reader.read_message(s, time_point::max(), "second");
    EXPECT_EQ(reader.parser().response_message().body, "second");
    EXPECT_FALSE(reader.has_leftover());
  };
  loop.run(main());
}

TEST(MessageReader, ParseBufferedLeavesTheNextMessageInTheBuffer) {
  event_loop loop;
  auto main = [&]() -> task<void> {
    pair p = co_await connected_pair();
    const std::string wire = response_text("one") + response_text("two") + "HTTP/1.1 2";
    co_await p.out.write_all(std::string_view(wire));
    p.out.shutdown_write();
    co_await sleep_for(20ms);  // everything is in the receive queue: one read takes it all
    stream s(std::move(p.in));
    message_reader reader(message_parser::kind::response);
    EXPECT_TRUE(co_await reader.wait_for_data(s, time_point::max()));
    EXPECT_TRUE(reader.parse_buffered(true));
    EXPECT_TRUE(reader.parse_buffered());
    EXPECT_EQ(reader.parser().response_message().body, "one");
    EXPECT_TRUE(reader.has_leftover());
    reader.next();
    EXPECT_TRUE(reader.parse_buffered());  // no I/O: "two" was in the same read
    EXPECT_EQ(reader.parser().response_message().body, "two");
    reader.next();
    EXPECT_FALSE(reader.parse_buffered());  // a message cut short: the parser took the bytes
    EXPECT_FALSE(reader.has_leftover());
    EXPECT_FALSE(reader.parser().idle());
    std::string error;
    try {
      co_await reader.read_message(s, time_point::max(), "third");
    } catch (const protocol_error& e) {
      error = e.what();
    }
    EXPECT_NE(error.find("closed in the middle of the headers"), std::string::npos) << error;
  };
  loop.run(main());
}

TEST(MessageReader, ReadHeadersTimesOutNamingThePhase) {
  event_loop loop;
  auto main = [&]() -> task<void> {
    pair p = co_await connected_pair();
    co_await p.out.write_all(std::string_view("HTTP/1.1 200 OK\r\nContent-"));
    stream s(std::move(p.in));
    message_reader reader(message_parser::kind::response);
    EXPECT_TRUE(co_await reader.wait_for_data(s, time_point::max()));
    EXPECT_FALSE(reader.parse_buffered(true));
    std::string error;
    try {
      co_await reader.read_headers(s, loop.now() + 30ms, "reading the headers");
    } catch (const timeout_error& e) {
      error = e.what();
    }
    EXPECT_EQ(error, "reading the headers timed out in the headers");
  };
  loop.run(main());
}

TEST(TcpStream, TryWriteTakesWhatFitsAndNeverWaits) {
  event_loop loop;
  auto main = [&]() -> task<void> {
    pair p = co_await connected_pair();
    EXPECT_EQ(p.out.try_write("small"), 5u);
    // Far more than the loopback socket buffers hold while nobody reads.
    const std::string huge = pattern(64 * 1024 * 1024);
    const std::size_t sent = p.out.try_write(huge);
    EXPECT_GT(sent, 0u);
    EXPECT_LT(sent, huge.size());
    EXPECT_EQ(p.out.try_write(std::string_view(huge).substr(sent)), 0u);  // still full: nothing, no wait
    auto rest = loop.spawn(p.out.write_all(std::string_view(huge).substr(sent)), "rest");
    std::string got;
    std::string buf(1 << 16, '\0');
    while (got.size() < 5 + huge.size()) {
      const std::size_t n = co_await p.in.read_some(std::span<char>(buf));
      EXPECT_GT(n, 0u);
      if (n == 0) break;
      got.append(buf.data(), n);
    }
    co_await std::move(rest);
    EXPECT_EQ(got.size(), 5 + huge.size());
    EXPECT_TRUE(got.compare(0, 5, "small") == 0);
    EXPECT_TRUE(std::string_view(got).substr(5) == huge);
    p.in.close();
    bool failed = false;
    try {
      p.out.close();
      (void)p.out.try_write("x");
    } catch (const net::connection_error&) {
      failed = true;
    }
    EXPECT_TRUE(failed);
  };
  loop.run(main());
}

}  // namespace
}  // namespace spindle::http
