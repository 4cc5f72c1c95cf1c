#include <gtest/gtest.h>

#include <string>

#include "spindle/http/message.hpp"
#include "spindle/http/parser.hpp"
#include "spindle/http/url.hpp"

namespace spindle::http {
namespace {

TEST(Url, ParsesWhatAClientNeeds) {
  url u = url::parse("HTTPS://Example.COM/a/b?x=1#frag");
  EXPECT_EQ(u.scheme, "https");
  EXPECT_EQ(u.host, "example.com");
  EXPECT_EQ(u.port, 443);
  EXPECT_EQ(u.target, "/a/b?x=1");
  EXPECT_EQ(u.origin(), "https://example.com");
  EXPECT_EQ(u.host_header(), "example.com");
  url v = url::parse("http://[::1]:8080?q");
  EXPECT_EQ(v.host, "::1");
  EXPECT_EQ(v.port, 8080);
  EXPECT_EQ(v.target, "/?q");
  EXPECT_EQ(v.host_header(), "[::1]:8080");
  EXPECT_EQ(url::parse("http://user:pw@h:81").userinfo, "user:pw");
  EXPECT_EQ(url::parse("http://127.0.0.1").to_string(), "http://127.0.0.1/");
}

TEST(Url, BadInputIsAnInvalidUrlErrorSayingWhat) {
  auto why = [](const char* text) {
    try {
      (void)url::parse(text);
    } catch (const invalid_url_error& e) {
      EXPECT_STREQ(e.kind(), "invalid_url");
      return std::string(e.what());
    }
    return std::string("parsed");
  };
  EXPECT_NE(why("htp:/x").find("unsupported scheme 'htp'"), std::string::npos);
  EXPECT_NE(why("ftp://x/").find("unsupported scheme 'ftp'"), std::string::npos);
  EXPECT_NE(why("http://").find("empty host"), std::string::npos);
  EXPECT_NE(why("http:///path").find("empty host"), std::string::npos);
  EXPECT_NE(why("http://h:99999/").find("bad port"), std::string::npos);
  EXPECT_NE(why("http://h:0/").find("bad port"), std::string::npos);
  EXPECT_NE(why("http://a b/").find("space"), std::string::npos);
  EXPECT_NE(why("example.com").find("no scheme"), std::string::npos);
  EXPECT_NE(why("http:/x").find("expected '//'"), std::string::npos);
  EXPECT_NE(why("http://[::1/").find("IPv6"), std::string::npos);
  EXPECT_NE(why("http://h<x>/").find("bad character"), std::string::npos);
}

TEST(Url, ResolvesRedirectLocations) {
  url base = url::parse("https://a.test/dir/page?x");
  EXPECT_EQ(base.resolve("/root").to_string(), "https://a.test/root");
  EXPECT_EQ(base.resolve("other").to_string(), "https://a.test/dir/other");
  EXPECT_EQ(base.resolve("//b.test/p").to_string(), "https://b.test/p");
  EXPECT_EQ(base.resolve("http://c.test:8080/q").to_string(), "http://c.test:8080/q");
}

TEST(Headers, CaseInsensitiveAndTokens) {
  headers h{{"Content-Type", "text/plain"}, {"connection", "keep-alive, Upgrade"}};
  h.add("Set-Cookie", "a=1");
  h.add("set-cookie", "b=2");
  EXPECT_EQ(h.get("content-type"), "text/plain");
  EXPECT_EQ(h.get_all("SET-COOKIE").size(), 2u);
  EXPECT_TRUE(h.has_token("Connection", "upgrade"));
  EXPECT_FALSE(h.has_token("Connection", "close"));
  h.set("Set-Cookie", "c=3");
  EXPECT_EQ(h.get_all("set-cookie").size(), 1u);
  EXPECT_FALSE(h.get("missing"));
}

response parse_response(const std::string& wire, bool finish = false) {
  message_parser p(message_parser::kind::response);
  std::size_t used = p.feed(wire);
  EXPECT_EQ(used, wire.size());
  if (finish) p.finish();
  EXPECT_TRUE(p.complete());
  return p.response_message();
}

TEST(Parser, ContentLengthChunkedAndCloseDelimitedBodies) {
  response a = parse_response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello");
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.reason, "OK");
  EXPECT_EQ(a.body, "hello");
  EXPECT_EQ(a.headers.get("x-a"), "1");
  response b = parse_response(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
  EXPECT_EQ(b.body, "hello world");
  EXPECT_EQ(b.wire_body_bytes, 11u);
  response c = parse_response("HTTP/1.0 200 OK\r\n\r\nuntil close", true);
  EXPECT_EQ(c.body, "until close");
  EXPECT_EQ(c.version_minor, 0);
}

TEST(Parser, StopsAfterOneMessageForPipelining) {
  message_parser p(message_parser::kind::request);
  const std::string two =
      "GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi";
  std::size_t used = p.feed(two);
  ASSERT_TRUE(p.complete());
  EXPECT_EQ(p.request_message().method, "GET");
  EXPECT_EQ(p.request_message().target, "/a");
  EXPECT_TRUE(p.keep_alive());
  p.reset();
  EXPECT_EQ(p.feed(std::string_view(two).substr(used)), two.size() - used);
  ASSERT_TRUE(p.complete());
  EXPECT_EQ(p.request_message().method, "POST");
  EXPECT_EQ(p.request_message().body, "hi");
}

TEST(Parser, ByteAtATimeIsTheSame) {
  const std::string wire =
      "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
  message_parser p(message_parser::kind::response);
  for (char c : wire) p.feed(std::string_view(&c, 1));
  ASSERT_TRUE(p.complete());
  EXPECT_EQ(p.response_message().status, 404);
  EXPECT_EQ(p.response_message().body, "abc");
}

std::string protocol_failure(const std::string& wire, parse_limits limits = {}, bool finish = false) {
  message_parser p(message_parser::kind::response, limits);
  try {
    p.feed(wire);
    if (finish) p.finish();
  } catch (const protocol_error& e) {
    EXPECT_STREQ(e.kind(), "protocol");
    return e.what();
  }
  return "no error";
}

TEST(Parser, MalformedInputIsAProtocolError) {
  EXPECT_NE(protocol_failure("HTTP/1.1 2x0 OK\r\n\r\n"), "no error");
  EXPECT_NE(protocol_failure("SMTP 220 hello\r\n"), "no error");
  // Found by the fuzzer: llhttp 8 accepts a two-digit status.
  EXPECT_NE(protocol_failure("HTTP/1.1 30\r\nContent-Length: 0\r\n\r\n").find("invalid status code 30"),
            std::string::npos);
  EXPECT_NE(protocol_failure("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), "no error");
  EXPECT_NE(protocol_failure("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            "no error");
  EXPECT_NE(protocol_failure("HTTP/1.1 200 OK\r\nBad Header\r\n\r\n"), "no error");
  EXPECT_NE(protocol_failure("HTTP/1.1 200 OK\r\nX: " + std::string(100, 'a') + "\r\n\r\n",
                             {.max_header_bytes = 64})
                .find("headers exceed 64 bytes"),
            std::string::npos);
  EXPECT_NE(protocol_failure("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", {.max_body_bytes = 4})
                .find("body exceeds 4 bytes"),
            std::string::npos);
  // Cut short: a wrong Content-Length, then the end of the connection.
  EXPECT_NE(protocol_failure("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", {}, true)
                .find("before the body"),
            std::string::npos);
  EXPECT_NE(protocol_failure("HTTP/1.1 200 OK\r\nX-Half", {}, true).find("headers"), std::string::npos);
}

TEST(Parser, HeadResponsesHaveNoBody) {
  message_parser p(message_parser::kind::response);
  p.set_no_body(true);
  const std::string wire = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
  EXPECT_EQ(p.feed(wire), wire.size());
  EXPECT_TRUE(p.complete());
  EXPECT_TRUE(p.response_message().body.empty());
}

TEST(Parser, CountsBodiesItDoesNotKeep) {
  message_parser p(message_parser::kind::response, {.keep_body = false});
  p.feed(std::string("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabcdef"));
  ASSERT_TRUE(p.complete());
  EXPECT_TRUE(p.response_message().body.empty());
  EXPECT_EQ(p.response_message().wire_body_bytes, 6u);
}

// ---- requests: the server side's parser (issue #15) ----------------------

struct request_outcome {
  parse_failure failure = parse_failure::none;
  std::string error;
  request req;
  bool complete = false;
};

// Feeds `wire` in pieces of `piece` bytes (0: all at once).
request_outcome parse_request(const std::string& wire, parse_limits limits = {}, std::size_t piece = 0) {
  message_parser p(message_parser::kind::request, limits);
  request_outcome out;
  try {
    std::string_view rest = wire;
    while (!rest.empty() && !p.complete()) {
      const std::size_t n = piece == 0 ? rest.size() : std::min(piece, rest.size());
      const std::size_t used = p.feed(rest.substr(0, n));
      if (used < n && !p.complete()) ADD_FAILURE() << "feed took " << used << " of " << n;
      rest.remove_prefix(used);
      if (used == 0) break;
    }
  } catch (const protocol_error& e) {
    out.error = e.what();
  }
  out.failure = p.failure();
  out.complete = p.complete();
  if (out.complete) out.req = std::move(p.request_message());
  return out;
}

std::string head_of_size(std::size_t total) {
  // "GET / HTTP/1.1\r\nHost: x\r\nX: vvv\r\n\r\n" with the X value sized to make `total` bytes.
  const std::string fixed = "GET / HTTP/1.1\r\nHost: x\r\nX: \r\n\r\n";
  return "GET / HTTP/1.1\r\nHost: x\r\nX: " + std::string(total - fixed.size(), 'v') + "\r\n\r\n";
}

TEST(RequestParser, EveryHeadByteCountsAgainstMaxHeaderBytes) {
  const parse_limits limits{.max_header_bytes = 256};
  for (std::size_t piece : {0, 1, 7}) {
    SCOPED_TRACE(piece);
    EXPECT_TRUE(parse_request(head_of_size(256), limits, piece).complete);
    const request_outcome over = parse_request(head_of_size(257), limits, piece);
    EXPECT_FALSE(over.complete);
    EXPECT_EQ(over.failure, parse_failure::head_too_large);
    // Whitespace before a value, and empty lines before the request line, count too.
    EXPECT_EQ(
        parse_request("GET / HTTP/1.1\r\nHost: x\r\nX:" + std::string(300, ' ') + "v\r\n\r\n", limits, piece)
            .failure,
        parse_failure::head_too_large);
    EXPECT_EQ(
        parse_request(std::string(300, '\n') + "GET / HTTP/1.1\r\nHost: x\r\n\r\n", limits, piece).failure,
        parse_failure::head_too_large);
    // A request line alone over the limit, never ended by a line feed.
    EXPECT_EQ(parse_request("GET /" + std::string(300, 'a'), limits, piece).failure,
              parse_failure::head_too_large);
  }
}

TEST(RequestParser, FieldsAreCountedEvenEmpty) {
  std::string hundred = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 99; ++i) hundred += "a:\r\n";
  hundred += "Host: x\r\n";
  EXPECT_TRUE(parse_request(hundred + "\r\n").complete);
  const request_outcome more = parse_request(hundred + "b:\r\n\r\n");
  EXPECT_EQ(more.failure, parse_failure::too_many_fields);
  EXPECT_NE(more.error.find("header fields exceed 100"), std::string::npos) << more.error;
  EXPECT_EQ(parse_request(hundred + "\r\n", {.max_header_fields = 10}).failure,
            parse_failure::too_many_fields);
}

TEST(RequestParser, TrailersAreCountedAndDropped) {
  const std::string head =
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n";
  const request_outcome ok = parse_request(head + "X-Sum: 1\r\n\r\n");
  ASSERT_TRUE(ok.complete) << ok.error;
  EXPECT_EQ(ok.req.body, "abc");
  EXPECT_FALSE(ok.req.headers.contains("X-Sum"));  // RFC 9110 §6.5.1: not merged into the header section
  std::string many;
  for (int i = 0; i < 101; ++i) many += "t:\r\n";
  EXPECT_EQ(parse_request(head + many + "\r\n").failure, parse_failure::too_many_fields);
  EXPECT_EQ(
      parse_request(head + "T: " + std::string(300, 'v') + "\r\n\r\n", {.max_header_bytes = 256}).failure,
      parse_failure::head_too_large);
}

TEST(RequestParser, UnknownMethodsReachTheRequestIntact) {
  for (std::size_t piece : {0, 1, 3}) {
    SCOPED_TRACE(piece);
    const request_outcome q =
        parse_request("QUERY /search HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi", {}, piece);
    ASSERT_TRUE(q.complete) << q.error;
    EXPECT_EQ(q.req.method, "QUERY");
    EXPECT_EQ(q.req.target, "/search");
    EXPECT_EQ(q.req.body, "hi");
    const request_outcome foo = parse_request("FOO_BAR-1 / HTTP/1.1\r\nHost: x\r\n\r\n", {}, piece);
    ASSERT_TRUE(foo.complete) << foo.error;
    EXPECT_EQ(foo.req.method, "FOO_BAR-1");
    EXPECT_EQ(parse_request("PURGE /x HTTP/1.1\r\nHost: x\r\n\r\n", {}, piece).req.method, "PURGE");
    EXPECT_EQ(parse_request("G(T / HTTP/1.1\r\nHost: x\r\n\r\n", {}, piece).failure,
              parse_failure::malformed);
  }
}

TEST(RequestParser, VersionsOtherThanOneAreNotSupported) {
  EXPECT_EQ(parse_request("GET / HTTP/2.0\r\nHost: x\r\n\r\n").failure, parse_failure::version_not_supported);
  EXPECT_EQ(parse_request("GET / HTTP/3.0\r\nHost: x\r\n\r\n").failure, parse_failure::version_not_supported);
  EXPECT_EQ(parse_request("GET / HTTP/0.9\r\nHost: x\r\n\r\n").failure, parse_failure::version_not_supported);
  const request_outcome later = parse_request("GET / HTTP/1.2\r\nHost: x\r\n\r\n", {}, 1);
  ASSERT_TRUE(later.complete) << later.error;
  EXPECT_EQ(later.req.version_minor, 1);  // RFC 9110 §6.2: served as the highest minor we know
  EXPECT_EQ(parse_request("GET / HTTP/1.1 x\r\nHost: x\r\n\r\n").failure, parse_failure::malformed);
  EXPECT_EQ(parse_request("GET / HTTX/1.1\r\nHost: x\r\n\r\n").failure, parse_failure::malformed);
}

TEST(RequestParser, APartialRequestLineIsNotIdle) {
  message_parser p(message_parser::kind::request);
  EXPECT_TRUE(p.idle());
  p.feed(std::string_view("GE"));
  EXPECT_FALSE(p.idle());
  EXPECT_THROW(p.finish(), protocol_error);
  message_parser blank(message_parser::kind::request);
  blank.feed(std::string_view("\r\n"));
  EXPECT_FALSE(blank.idle());
}

}  // namespace
}  // namespace spindle::http
