// The HTTP client against spindle's own HTTP server (both on one loop).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "spindle/cancel_scope.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/gather.hpp"
#include "spindle/http/client.hpp"
#include "spindle/http/metrics.hpp"
#include "spindle/http/server.hpp"
#include "spindle/sleep.hpp"
#include "support/test_support.hpp"

namespace spindle::http {
namespace {

using namespace std::chrono_literals;

// Routes for the tests' server.
task<response> routes(request& req) {
  response r;
  r.status = 200;
  if (req.target == "/hello") {
    r.body = "hello";
  } else if (req.target == "/echo") {
    r.body = req.method + " " + req.body;
  } else if (req.target.starts_with("/sleep")) {
    co_await sleep_for(std::chrono::milliseconds(std::stoi(req.target.substr(7))));
    r.body = "slept";
  } else if (req.target == "/throws") {
    throw std::runtime_error("handler bug");
  } else if (req.target == "/busy") {
    r.status = 503;
    r.headers.add("Retry-After", "7");
  } else if (req.target == "/moved") {
    r.status = 302;
    r.headers.add("Location", "/hello");
  } else {
    r.status = 404;
  }
  co_return r;
}

// Runs `body(base_url, server)` with a server on 127.0.0.1 on the same loop.
template <class Body>
std::string with_server(Body body, server_options opts = {}) {
  event_loop loop;
  auto main = [&]() -> task<std::string> {
    server srv(routes, std::move(opts));
    net::tcp_listener listener = net::tcp_listener::bind(net::socket_address::loopback_v4(0));
    const std::string base = "http://127.0.0.1:" + std::to_string(listener.local_address().port());
    auto running = loop.spawn(srv.serve(std::move(listener)), "server");
    auto result = co_await body(base, srv);
    srv.stop();
    co_await running;
    co_return result;
  };
  return loop.run(main());
}

TEST(HttpClient, GetPostAndKeepAlive) {
  auto r = with_server([](std::string base, server&) -> task<std::string> {
    client c;
    response a = co_await c.get(base + "/hello");
    headers h;  // (a braced list as a coroutine argument trips g++ 12: DEVELOPERS.md)
    h.add("Content-Type", "text/plain");
    response b = co_await c.send("POST", base + "/echo", std::move(h), "payload");
    response d = co_await c.get(base + "/nope");
    client_statistics s = c.statistics();
    co_return std::to_string(a.status) + a.body + "|" + b.body + "|" + std::to_string(d.status) +
        "|created=" + std::to_string(s.created) + " reused=" + std::to_string(s.reused) +
        " idle=" + std::to_string(s.idle);
  });
  EXPECT_EQ(r, "200hello|POST payload|404|created=1 reused=2 idle=1");
}

TEST(HttpClient, ConcurrentRequestsRespectThePerOriginLimit) {
  auto r = with_server([](std::string base, server& srv) -> task<std::string> {
    client_options options;  // named: an aggregate temporary with strings trips g++ 12 in a coroutine
    options.max_connections_per_origin = 4;
    client c(options);
    auto results =
        co_await gather_settled(std::views::iota(0, 40), [&](int) { return c.get(base + "/sleep/5"); });
    int ok = 0;
    for (auto& o : results) ok += o.ok() && o.value().body == "slept";
    co_return std::to_string(ok) + " created=" + std::to_string(c.statistics().created) +
        " accepted=" + std::to_string(srv.statistics().connections_accepted);
  });
  EXPECT_EQ(r, "40 created=4 accepted=4");
}

// Requests queued behind a limit get the connection in arrival order, one
// hand-over each (no herd re-checking the pool, no newcomer jumping ahead).
TEST(HttpClient, WaitersAreServedInArrivalOrder) {
  auto r = with_server([](std::string base, server&) -> task<std::string> {
    client_options options;
    options.max_connections_per_origin = 1;
    client c(options);
    std::string order;
    auto one = [&](int i) -> task<void> {
      response got = co_await c.get(base + "/sleep/2");
      if (got.body == "slept") order += std::to_string(i);
    };
    std::vector<join_handle<void>> running;
    for (int i = 0; i < 6; ++i) running.push_back(event_loop::current()->spawn(one(i), "request"));
    co_await sleep_for(1ms);
    const std::uint64_t queued = c.statistics().waiting;
    for (auto& h : running) co_await h;
    client_statistics s = c.statistics();
    co_return order + " queued=" + std::to_string(queued) + " created=" + std::to_string(s.created) +
        " reused=" + std::to_string(s.reused) + " waiting=" + std::to_string(s.waiting);
  });
  EXPECT_EQ(r, "012345 queued=5 created=1 reused=5 waiting=0");
}

// A waiter cancelled in the queue gives up its turn; the connection goes to
// the next one instead of being lost (which would hang it) or closed.
TEST(HttpClient, ACancelledWaiterPassesItsTurnOn) {
  auto r = with_server([](std::string base, server&) -> task<std::string> {
    client_options options;
    options.max_connections_per_origin = 1;
    client c(options);
    std::string log;
    auto first = [&]() -> task<void> { log += (co_await c.get(base + "/sleep/30")).body + ","; };
    auto impatient = [&]() -> task<void> {
      auto got = co_await move_on_after(5ms, c.get(base + "/hello"));
      log += got ? "B got it," : "B gave up,";
    };
    auto last = [&]() -> task<void> { log += (co_await c.get(base + "/hello")).body; };
    auto a = event_loop::current()->spawn(first(), "a");
    auto b = event_loop::current()->spawn(impatient(), "b");
    auto d = event_loop::current()->spawn(last(), "c");
    co_await a;
    co_await b;
    co_await d;
    client_statistics s = c.statistics();
    co_return log + " created=" + std::to_string(s.created) + " waiting=" + std::to_string(s.waiting);
  });
  EXPECT_EQ(r, "B gave up,slept,hello created=1 waiting=0");
}

// max_connections_total is shared: an origin waiting for room evicts another
// origin's idle connection, and the queue order holds across origins.
TEST(HttpClient, TheTotalLimitIsSharedAcrossOrigins) {
  auto r = with_server([](std::string base, server& srv) -> task<std::string> {
    client_options options;
    options.max_connections_total = 1;
    client c(options);
    const std::string other = "http://localhost:" + base.substr(base.rfind(':') + 1);
    std::string order;
    auto one = [&](int i) -> task<void> {
      response got = co_await c.get((i % 2 == 0 ? base : other) + "/hello");
      if (got.body == "hello") order += std::to_string(i);
    };
    std::vector<join_handle<void>> running;
    for (int i = 0; i < 6; ++i) running.push_back(event_loop::current()->spawn(one(i), "request"));
    for (auto& h : running) co_await h;
    client_statistics s = c.statistics();
    co_return order + " created=" + std::to_string(s.created) + " open=" + std::to_string(s.open) +
        " accepted=" + std::to_string(srv.statistics().connections_accepted);
  });
  EXPECT_EQ(r, "012345 created=6 open=1 accepted=6");
}

TEST(HttpClient, StatusErrorsCarryRetryAfterAndRedirectsAreOptIn) {
  auto r = with_server([](std::string base, server&) -> task<std::string> {
    client c;
    std::string out;
    try {
      co_await c.get(base + "/busy", {.throw_on_status = true});
    } catch (const http_status_error& e) {
      out += std::string(e.kind()) + " " + std::to_string(e.status()) + " " +
             std::to_string(std::chrono::duration_cast<std::chrono::seconds>(*e.retry_after()).count()) + "s";
    }
    response moved = co_await c.get(base + "/moved");
    response followed = co_await c.get(base + "/moved", {.max_redirects = 3});
    co_return out + " | " + std::to_string(moved.status) + " | " + std::to_string(followed.status) + " " +
        followed.body;
  });
  EXPECT_EQ(r, "http_status 503 7s | 302 | 200 hello");
}

TEST(HttpClient, RequestTimeoutIsATimeoutErrorAndTheConnectionIsNotReused) {
  auto r = with_server([](std::string base, server&) -> task<std::string> {
    client c;
    std::string kind;
    try {
      co_await c.get(base + "/sleep/300", {.timeout = 50ms});
    } catch (const timeout_error& e) {
      kind = e.kind();
      // The request's own deadline, naming the step it cut short.
      EXPECT_NE(std::string(e.what()).find("timed out after 50 ms (waiting for the response headers)"),
                std::string::npos)
          << e.what();
    }
    response after = co_await c.get(base + "/hello");
    co_return kind + " " + after.body + " created=" + std::to_string(c.statistics().created) +
        " failed=" + std::to_string(c.statistics().failed);
  });
  EXPECT_EQ(r, "timeout hello created=2 failed=1");
}

TEST(HttpClient, HandlerFailureIs500AndTheServerStaysUp) {
  auto r = with_server([](std::string base, server& srv) -> task<std::string> {
    client c;
    response bad = co_await c.get(base + "/throws");
    response good = co_await c.get(base + "/hello");
    co_return std::to_string(bad.status) + " " + good.body +
        " failures=" + std::to_string(srv.statistics().handler_failures);
  });
  EXPECT_EQ(r, "500 hello failures=1");
}

TEST(HttpClient, ConnectionRefusedAndInvalidUrlAreTyped) {
  event_loop loop;
  auto main = [&]() -> task<std::string> {
    client c;
    std::string out;
    try {
      co_await c.get("htp:/x");
    } catch (const error& e) {
      out += e.kind();
    }
    net::tcp_listener l = net::tcp_listener::bind(net::socket_address::loopback_v4(0));
    const std::string url = "http://127.0.0.1:" + std::to_string(l.local_address().port()) + "/";
    l.close();
    try {
      co_await c.get(url);
    } catch (const error& e) {
      out += std::string(" ") + e.kind();
    }
    co_return out;
  };
  EXPECT_EQ(loop.run(main()), "invalid_url connect");
}

// Raw clients against the server: pipelining, limits, slowloris.
task<std::string> raw_exchange(std::string base, std::string bytes) {
  const auto port = static_cast<std::uint16_t>(std::stoi(base.substr(base.rfind(':') + 1)));
  net::tcp_stream s = co_await net::connect(net::socket_address::loopback_v4(port));
  co_await s.write_all(std::string_view(bytes));
  std::string got;
  char buf[4096];
  for (;;) {
    auto n = co_await move_on_after(2s, s.read_some(std::span<char>(buf)));
    if (!n || *n == 0) break;
    got.append(buf, *n);
  }
  co_return got;
}

TEST(HttpServer, PipelinedRequestsAreAnsweredInOrder) {
  auto r = with_server([](std::string base, server&) -> task<std::string> {
    co_return co_await raw_exchange(base,
                                    "GET /sleep/30 HTTP/1.1\r\nHost: x\r\n\r\n"
                                    "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  });
  const auto first = r.find("slept");
  const auto second = r.find("hello");
  ASSERT_NE(first, std::string::npos) << r;
  ASSERT_NE(second, std::string::npos) << r;
  EXPECT_LT(first, second);
}

TEST(HttpServer, OversizedHeadersGet431) {
  auto r = with_server(
      [](std::string base, server&) -> task<std::string> {
        co_return co_await raw_exchange(
            base, "GET /hello HTTP/1.1\r\nHost: x\r\nX: " + std::string(4000, 'a') + "\r\n\r\n");
      },
      {.max_header_bytes = 1024});
  EXPECT_EQ(r.rfind("HTTP/1.1 431", 0), 0u) << r.substr(0, 80);
}

TEST(HttpServer, SlowHeadersAreCutOff) {
  auto r = with_server(
      [](std::string base, server& srv) -> task<std::string> {
        const auto port = static_cast<std::uint16_t>(std::stoi(base.substr(base.rfind(':') + 1)));
        net::tcp_stream s = co_await net::connect(net::socket_address::loopback_v4(port));
        co_await s.write_all(std::string_view("GET /hello HTTP/1.1\r\n"));
        char buf[512];
        std::string got;
        for (int i = 0; i < 50; ++i) {  // one header line every 20 ms: never done in time
          auto n = co_await move_on_after(20ms, s.read_some(std::span<char>(buf)));
          if (n && *n == 0) break;
          if (n) got.append(buf, *n);
          try {
            co_await s.write_all(std::string_view("X-Slow: 1\r\n"));
          } catch (const net::connection_error&) {
            break;
          }
        }
        co_return got.substr(0, 12) + " bad=" + std::to_string(srv.statistics().bad_requests);
      },
      {.header_timeout = 100ms});
  EXPECT_EQ(r, "HTTP/1.1 408 bad=1");
}

TEST(HttpServer, StopFinishesInFlightRequests) {
  event_loop loop;
  auto main = [&]() -> task<std::string> {
    server srv(routes);
    net::tcp_listener listener = net::tcp_listener::bind(net::socket_address::loopback_v4(0));
    const std::string base = "http://127.0.0.1:" + std::to_string(listener.local_address().port());
    auto running = loop.spawn(srv.serve(std::move(listener)), "server");
    client c;
    auto slow = loop.spawn(c.get(base + "/sleep/100"), "slow");
    co_await sleep_for(30ms);
    srv.stop();
    response r = co_await slow;
    co_await running;
    co_return r.body + " " + std::string(r.headers.get("Connection").value_or("")) +
        " open=" + std::to_string(srv.statistics().connections_open);
  };
  EXPECT_EQ(loop.run(main()), "slept close open=0");
}

TEST(HttpClient, PoolAndServerStatisticsAsPrometheusText) {
  const std::string text = with_server([](std::string base, server& srv) -> task<std::string> {
    client c;
    co_await c.get(base + "/hello");
    co_await c.get(base + "/hello");
    prometheus_exposition e;
    add_metrics(e, c.statistics(), "api");
    add_metrics(e, srv.statistics(), "front");
    co_return e.str();
  });
  EXPECT_NE(text.find("spindle_http_client_connections_created_total{client=\"api\"} 1\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("spindle_http_client_requests_reused_total{client=\"api\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("spindle_http_client_connections_idle{client=\"api\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("spindle_http_server_requests_total{server=\"front\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE spindle_http_server_connections_open gauge\n"), std::string::npos);
}

TEST(HttpClient, RetryAfterParsesSecondsAndDates) {
  EXPECT_EQ(parse_retry_after("120"), std::chrono::duration_cast<duration>(120s));
  EXPECT_FALSE(parse_retry_after("soon"));
  EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"), duration::zero());  // in the past
}

TEST(HttpClient, RetryPresetRetriesOnlyIdempotentMethods) {
  EXPECT_EQ(http_retry_policy("GET").max_attempts, 3u);
  EXPECT_EQ(http_retry_policy("POST").max_attempts, 1u);
  EXPECT_EQ(http_retry_policy("POST", 3, 100ms, true).max_attempts, 3u);
  auto p = http_retry_policy("GET");
  EXPECT_TRUE(p.retryable(std::make_exception_ptr(http_status_error(503, "x", std::nullopt))));
  EXPECT_TRUE(p.retryable(std::make_exception_ptr(http_status_error(429, "x", 2s))));
  EXPECT_FALSE(p.retryable(std::make_exception_ptr(http_status_error(404, "x", std::nullopt))));
  EXPECT_TRUE(p.retryable(std::make_exception_ptr(net::connect_error("refused"))));
  EXPECT_TRUE(p.retryable(std::make_exception_ptr(timeout_error("t"))));
  EXPECT_FALSE(p.retryable(std::make_exception_ptr(protocol_error("p"))));
  EXPECT_EQ(p.retry_after(std::make_exception_ptr(http_status_error(429, "x", 2s))),
            std::optional<duration>(2s));
}

}  // namespace
}  // namespace spindle::http
