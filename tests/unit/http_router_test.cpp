// http::router: dispatch by method and path, and the RFC 9110 answers when
// nothing matches (501 for a method no route takes, 405 with Allow for a
// known path, 404 otherwise).

#include "spindle/http/router.hpp"

#include <gtest/gtest.h>

#include <string>

#include "spindle/event_loop.hpp"
#include "spindle/http/background_server.hpp"
#include "spindle/http/errors.hpp"
#include "support/raw_client.hpp"

namespace spindle::http {
namespace {

handler answer(std::string text) {
  return [text](request&) -> task<response> {
    response r;
    r.status = 200;
    r.body = text;
    co_return r;
  };
}

response dispatch(const router& r, std::string method, std::string target) {
  event_loop loop;
  request req;
  req.method = std::move(method);
  req.target = std::move(target);
  return loop.run(r(req));
}

router sample() {
  router r;
  r.add("GET", "/items", answer("list"))
      .add("POST", "/items", answer("create"))
      .add("GET", "/items/*", answer("one"))
      .add("PURGE", "/cache", answer("purged"));
  return r;
}

TEST(HttpRouter, DispatchesOnMethodAndPath) {
  const router r = sample();
  EXPECT_EQ(dispatch(r, "GET", "/items").body, "list");
  EXPECT_EQ(dispatch(r, "GET", "/items?page=2").body, "list");  // the query is not the path
  EXPECT_EQ(dispatch(r, "POST", "/items").body, "create");
  EXPECT_EQ(dispatch(r, "GET", "/items/7").body, "one");
  EXPECT_EQ(dispatch(r, "GET", "/items/7/parts").body, "one");
  EXPECT_EQ(dispatch(r, "PURGE", "/cache").body, "purged");  // an extension method, routed like any other
}

TEST(HttpRouter, HeadFallsBackToGet) {
  const router r = sample();
  EXPECT_EQ(dispatch(r, "HEAD", "/items").body, "list");  // the server sends the head only
  EXPECT_EQ(dispatch(r, "HEAD", "/items/3").status, 200);
}

TEST(HttpRouter, PrefixesEndAtASegmentBoundary) {
  const router r = sample();
  EXPECT_EQ(dispatch(r, "GET", "/itemsx").status, 404);
  EXPECT_EQ(dispatch(r, "GET", "/items/").body, "one");
}

TEST(HttpRouter, NoRouteAnswers501405Or404) {
  const router r = sample();
  const response unknown = dispatch(r, "FOO", "/items");
  EXPECT_EQ(unknown.status, 501);  // RFC 9110 §9.1: no route takes FOO anywhere
  const response wrong = dispatch(r, "DELETE", "/items");
  EXPECT_EQ(wrong.status, 501);  // DELETE is taken by no route either
  const response not_here = dispatch(r, "POST", "/items/7");
  EXPECT_EQ(not_here.status, 405);  // POST exists, not on this path
  EXPECT_EQ(not_here.headers.get("Allow").value_or(""), "GET, HEAD");
  const response list = dispatch(r, "PURGE", "/items");
  EXPECT_EQ(list.status, 405);
  EXPECT_EQ(list.headers.get("Allow").value_or(""), "GET, POST, HEAD");
  EXPECT_EQ(dispatch(r, "GET", "/nowhere").status, 404);
  EXPECT_EQ(dispatch(r, "PURGE", "/nowhere").status, 404);
}

TEST(HttpRouter, BadPatternsAreUsageErrors) {
  router r;
  EXPECT_THROW(r.add("GET", "items", answer("x")), usage_error);
  EXPECT_THROW(r.add("", "/items", answer("x")), usage_error);
}

// End to end: a well-formed unknown method on the wire reaches the router
// (it is not a parse error) and gets 501; the connection stays usable.
TEST(HttpRouter, AnUnknownMethodOnTheWireIs501) {
  background_server srv(sample());
  test::raw_client c = test::raw_client::connect(srv.port());
  ASSERT_TRUE(c.send("FOO /items HTTP/1.1\r\nHost: x\r\n\r\nGET /items HTTP/1.1\r\nHost: x\r\n\r\n"));
  const auto first = c.read_response(std::chrono::seconds(10));
  const auto second = c.read_response(std::chrono::seconds(10));
  ASSERT_TRUE(first);
  ASSERT_TRUE(second);
  EXPECT_EQ(first->status, 501);
  EXPECT_EQ(second->status, 200);
  EXPECT_EQ(second->body, "list");
}

}  // namespace
}  // namespace spindle::http
