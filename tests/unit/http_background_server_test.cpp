#include "spindle/http/background_server.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>

#include "spindle/event_loop.hpp"
#include "spindle/http/client.hpp"
#include "spindle/sleep.hpp"

namespace spindle::http {
namespace {

using namespace std::chrono_literals;

task<response> hello(request& req) {
  response r;
  r.status = 200;
  r.body = "hello from " + req.target;
  co_return r;
}

// One GET from a loop of this thread (the server's loop is another).
std::string get(const std::string& url) {
  event_loop loop;
  auto main = [&]() -> task<std::string> {
    client c;
    response r = co_await c.get(url, {.timeout = 5s});
    co_return std::to_string(r.status) + " " + r.body;
  };
  return loop.run(main());
}

TEST(BackgroundServer, ServesFromItsOwnThreadUntilStopped) {
  std::atomic<std::thread::id> handler_thread{};
  background_server srv(
      [&](request& req) {
        handler_thread = std::this_thread::get_id();
        return hello(req);
      },
      {.name = "test-api"});
  ASSERT_NE(srv.port(), 0);
  EXPECT_EQ(srv.base_url(), "http://127.0.0.1:" + std::to_string(srv.port()));
  EXPECT_EQ(get(srv.base_url() + "/a"), "200 hello from /a");
  EXPECT_EQ(get(srv.base_url() + "/b"), "200 hello from /b");
  EXPECT_NE(handler_thread.load(), std::this_thread::get_id());
  EXPECT_EQ(srv.statistics().requests, 2u);
  EXPECT_EQ(srv.loop().loop().name(), "test-api");
  srv.stop();
  srv.stop();  // idempotent
  EXPECT_THROW((void)srv.statistics(), usage_error);
  std::string kind;
  try {
    get(srv.base_url() + "/c");
  } catch (const spindle::error& e) {
    kind = e.kind();
  }
  EXPECT_EQ(kind, "connect");  // nobody listens any more
}

TEST(BackgroundServer, AnAddressInUseFailsTheConstructor) {
  background_server first(hello);
  background_server_options o;
  o.address = net::socket_address::loopback_v4(first.port());
  EXPECT_THROW(background_server second(hello, o), spindle::error);
  EXPECT_EQ(get(first.base_url() + "/still"), "200 hello from /still");
}

TEST(BackgroundServer, StopIsBoundedWhenAHandlerNeverEnds) {
  background_server_options o;
  o.server.shutdown_grace = 100ms;
  o.stop_timeout = 2s;
  auto srv = std::make_unique<background_server>(
      [](request&) -> task<response> {
        co_await sleep_for(1h);
        co_return response{};
      },
      o);
  const std::string url = srv->base_url() + "/hang";
  std::atomic<bool> failed{false};
  std::thread caller([&] {
    try {
      get(url);
    } catch (const spindle::error&) {
      failed = true;  // cut off by the stop (the handler's task is cancelled)
    }
  });
  std::this_thread::sleep_for(200ms);  // the request is in the handler
  EXPECT_EQ(srv->statistics().requests_in_flight, 1u);
  const auto t0 = std::chrono::steady_clock::now();
  srv.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);  // not the handler's hour
  caller.join();
  EXPECT_TRUE(failed.load());
}

}  // namespace
}  // namespace spindle::http
