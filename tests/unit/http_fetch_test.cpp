// The fetch engine (spindle/http/fetch.hpp) without the CLI: the contract
// (one result per input, in the right shape), retries and Retry-After, the
// per-host and rate limits, the deadline, stops and cancellation, ordered
// delivery, and bodies streamed to a store.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "spindle/cancel_scope.hpp"
#include "spindle/event.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/http/fetch.hpp"
#include "spindle/http/server.hpp"
#include "spindle/loop_group.hpp"
#include "spindle/portal.hpp"
#include "spindle/sleep.hpp"
#include "support/fault_server.hpp"

namespace spindle::http {
namespace {

using namespace std::chrono_literals;

test::fault_server& faults() {
  static test::fault_server s;
  return s;
}

// A server on the test's own loop that counts requests in flight: /sleep/N
// answers "slept" after N ms, /hello "hello".
struct counting_server {
  std::size_t now = 0, most = 0, served = 0;
  std::map<std::string, std::size_t> most_by_host;
  std::map<std::string, std::size_t> now_by_host;
};

template <class Body>
void with_counting_server(Body body) {
  event_loop loop;
  counting_server counts;
  auto routes = [&counts](request& req) -> task<response> {
    const std::string host(req.headers.get("Host").value_or(""));
    ++counts.now;
    counts.most = std::max(counts.most, counts.now);
    counts.most_by_host[host] = std::max(counts.most_by_host[host], ++counts.now_by_host[host]);
    response r;
    r.status = 200;
    if (req.target.starts_with("/sleep/")) {
      co_await sleep_for(std::chrono::milliseconds(std::stoi(req.target.substr(7))));
      r.body = "slept";
    } else {
      r.body = "hello";
    }
    --counts.now;
    --counts.now_by_host[host];
    ++counts.served;
    co_return r;
  };
  auto main = [&]() -> task<void> {
    server srv(routes);
    net::tcp_listener listener = net::tcp_listener::bind(net::socket_address::loopback_v4(0));
    const std::uint16_t port = listener.local_address().port();
    auto running = loop.spawn(srv.serve(std::move(listener)), "server");
    co_await body(port, counts);
    srv.stop();
    co_await running;
  };
  loop.run(main());
}

// Collects results in delivery order.
struct list_sink final : fetch_sink {
  std::vector<fetch_result> got;
  void deliver(fetch_result&& r) override { got.push_back(std::move(r)); }
};

// Every index of [0, n) exactly once.
void expect_one_result_each(const std::vector<fetch_result>& rs, std::size_t n) {
  ASSERT_EQ(rs.size(), n);
  std::vector<int> seen(n, 0);
  for (const auto& r : rs) {
    ASSERT_LT(r.index, n);
    ++seen[r.index];
  }
  for (std::size_t i = 0; i < n; ++i) EXPECT_EQ(seen[i], 1) << "index " << i;
}

std::vector<fetch_input> inputs_of(const std::vector<std::string>& urls) {
  std::vector<fetch_input> in;
  for (std::size_t i = 0; i < urls.size(); ++i) in.push_back(fetch_input{i, urls[i], {}});
  return in;
}

TEST(FetchEngine, EveryInputEndsInOneResultOfTheRightShape) {
  const std::string base = faults().base_url();
  const std::string port = std::to_string(faults().port());
  event_loop loop;
  auto main = [&]() -> task<std::vector<fetch_result>> {
    std::vector<fetch_input> in =
        inputs_of({base + "/ok", base + "/status?code=404", base + "/status?code=503", "htp:/x",
                   "127.0.0.1:" + port + "/ok", base + "/redirect?n=2"});
    in.push_back(fetch_input{6, std::string(100, 'x'), "line too long: 70000 bytes"});
    vector_source source(std::move(in));
    list_sink sink;
    fetch_options o;
    o.retries = 2;
    o.backoff = 1ms;
    o.keep_body = true;
    o.client.max_redirects = 5;
    fetch_statistics st = co_await fetch_many(source, sink, o);
    EXPECT_EQ(st.read, 7u);
    EXPECT_EQ(st.ok, 3u);
    EXPECT_EQ(st.failed, 4u);
    EXPECT_EQ(st.retries, 2u);  // the 503's
    EXPECT_EQ(st.errors["http_status"], 2u);
    EXPECT_EQ(st.errors["invalid_url"], 2u);
    EXPECT_TRUE(st.input_done);
    co_return std::move(sink.got);
  };
  std::vector<fetch_result> rs = loop.run(main());
  expect_one_result_each(rs, 7);
  std::sort(rs.begin(), rs.end(), [](auto& a, auto& b) { return a.index < b.index; });
  EXPECT_TRUE(rs[0].ok);
  EXPECT_EQ(rs[0].status, 200);
  EXPECT_EQ(rs[0].body, "ok");
  EXPECT_EQ(rs[0].final_url, base + "/ok");
  EXPECT_EQ(rs[0].attempts, 1u);
  EXPECT_FALSE(rs[1].ok);
  EXPECT_EQ(rs[1].error_kind, "http_status");
  EXPECT_EQ(rs[1].status, 404);
  EXPECT_EQ(rs[1].attempts, 1u);  // a 404 is final
  EXPECT_EQ(rs[1].body, "status 404");
  EXPECT_EQ(rs[2].status, 503);
  EXPECT_EQ(rs[2].attempts, 3u);
  EXPECT_EQ(rs[3].error_kind, "invalid_url");
  EXPECT_EQ(rs[3].attempts, 0u);
  EXPECT_EQ(rs[3].url, "htp:/x");
  EXPECT_TRUE(rs[4].ok) << rs[4].error_message;  // no scheme: http:// (curl's rule)
  EXPECT_EQ(rs[4].url, "127.0.0.1:" + port + "/ok");
  EXPECT_TRUE(rs[5].ok);
  EXPECT_EQ(rs[5].final_url, base + "/redirect?n=0");
  EXPECT_EQ(rs[6].error_kind, "invalid_url");
  EXPECT_EQ(rs[6].error_message, "line too long: 70000 bytes");
  EXPECT_EQ(rs[6].attempts, 0u);
}

TEST(FetchEngine, FetchAllKeepsInputOrderAndHeaders) {
  const std::string base = faults().base_url();
  event_loop loop;
  auto main = [&]() -> task<std::vector<fetch_result>> {
    std::vector<std::string> urls;
    for (int i = 0; i < 20; ++i) urls.push_back(base + "/delay?ms=" + std::to_string((20 - i) * 2));
    fetch_options o;
    o.keep_headers = true;
    co_return co_await fetch_all(std::move(urls), o);
  };
  auto rs = loop.run(main());
  ASSERT_EQ(rs.size(), 20u);
  for (std::size_t i = 0; i < rs.size(); ++i) {
    EXPECT_EQ(rs[i].index, i);
    EXPECT_TRUE(rs[i].ok);
    EXPECT_TRUE(rs[i].response_headers.contains("Content-Length"));
    EXPECT_TRUE(rs[i].body.empty());  // keep_body off
    EXPECT_EQ(rs[i].bytes, 2u);
  }
}

TEST(FetchEngine, ARetryAfterBeyondTheLimitEndsTheInput) {
  const std::string base = faults().base_url();
  event_loop loop;
  auto main = [&]() -> task<std::vector<fetch_result>> {
    std::vector<std::string> urls{base + "/status?code=503&retry_after=120",
                                  base + "/status?code=429&retry_after=0"};
    fetch_options o;
    o.max_retry_after = 5s;
    o.retries = 1;
    o.backoff = 1ms;
    co_return co_await fetch_all(std::move(urls), o);
  };
  auto rs = loop.run(main());
  EXPECT_EQ(rs[0].attempts, 1u);  // 120 s > 5 s: no wait, the status is the result
  EXPECT_EQ(rs[0].status, 503);
  EXPECT_EQ(rs[1].attempts, 2u);  // Retry-After: 0 is honoured
  EXPECT_EQ(rs[1].status, 429);
}

TEST(FetchEngine, PostIsNotRetriedUnlessAsked) {
  const std::string base = faults().base_url();
  event_loop loop;
  auto run = [&](bool unsafe) {
    auto main = [&]() -> task<std::vector<fetch_result>> {
      std::vector<std::string> urls{base + "/status?code=503"};
      fetch_options o;
      o.method = "POST";
      o.body = "payload";
      o.backoff = 1ms;
      o.retry_unsafe = unsafe;
      co_return co_await fetch_all(std::move(urls), o);
    };
    return loop.run(main());
  };
  EXPECT_EQ(run(false)[0].attempts, 1u);
  EXPECT_EQ(run(true)[0].attempts, 3u);
}

TEST(FetchEngine, PerHostLimitHoldsOnASharedClient) {
  with_counting_server([](std::uint16_t port, counting_server& counts) -> task<void> {
    client_options co;  // a client that would allow far more
    co.max_connections_per_origin = 64;
    client shared(co);
    std::vector<std::string> urls;
    for (int i = 0; i < 30; ++i) urls.push_back("http://127.0.0.1:" + std::to_string(port) + "/sleep/5");
    fetch_options o;
    o.concurrency = 16;
    o.per_host = 3;
    auto rs = co_await fetch_all(shared, std::move(urls), o);
    EXPECT_EQ(std::count_if(rs.begin(), rs.end(), [](auto& r) { return r.ok; }), 30);
    EXPECT_EQ(counts.served, 30u);
    EXPECT_LE(counts.most, 3u);
    EXPECT_GE(counts.most, 2u);  // (the window did run several at once)
    EXPECT_LE(shared.statistics().created, 3u);
  });
}

TEST(FetchEngine, RateLimitSpacesTheAttempts) {
  with_counting_server([](std::uint16_t port, counting_server& counts) -> task<void> {
    std::vector<std::string> urls;
    for (int i = 0; i < 30; ++i) urls.push_back("http://127.0.0.1:" + std::to_string(port) + "/hello");
    fetch_options o;
    o.rate = 100;  // burst 10: the other 20 take 200 ms at least
    event_loop& loop = *event_loop::current();
    const time_point start = loop.now();
    auto rs = co_await fetch_all(std::move(urls), o);
    const auto took = loop.now() - start;
    EXPECT_EQ(counts.served, 30u);
    EXPECT_GE(took, 190ms);
    EXPECT_EQ(rs.size(), 30u);
  });
}

TEST(FetchEngine, TheDeadlineGivesEveryInputOfAFiniteSourceItsResult) {
  const std::string base = faults().base_url();
  event_loop loop;
  auto main = [&]() -> task<std::vector<fetch_result>> {
    std::vector<std::string> urls;
    for (int i = 0; i < 3000; ++i) urls.push_back(base + "/delay?ms=20");
    vector_source source(inputs_of(urls));
    list_sink sink;
    fetch_options o;
    o.concurrency = 4;
    o.deadline = 150ms;
    fetch_statistics st = co_await fetch_many(source, sink, o);
    EXPECT_TRUE(st.deadline_hit);
    EXPECT_EQ(st.read, 3000u);
    EXPECT_EQ(st.ok + st.failed, 3000u);
    EXPECT_GT(st.errors["cancelled"], 2000u);
    co_return std::move(sink.got);
  };
  auto rs = loop.run(main());
  expect_one_result_each(rs, 3000);
  for (const auto& r : rs) {
    if (r.ok) continue;
    EXPECT_EQ(r.error_kind, "cancelled");
    EXPECT_NE(r.error_message.find("deadline of 150 ms"), std::string::npos) << r.error_message;
  }
}

// A source that never ends (a pipe): it gives `n` inputs, then waits.
struct endless_source final : fetch_source {
  std::string url;
  std::uint64_t given = 0, n = 0;
  task<bool> next(std::vector<fetch_input>& out, std::size_t max) override {
    if (given == n) co_await sleep_for(std::chrono::hours(1));  // the pipe's writer is silent
    while (given < n && max-- > 0) {
      out.push_back(fetch_input{given, url, {}});
      ++given;
    }
    co_return true;
  }
};

TEST(FetchEngine, StopEndsARunOverAnEndlessSourceWithAResultPerInputRead) {
  const std::string base = faults().base_url();
  event_loop loop;
  auto main = [&]() -> task<std::vector<fetch_result>> {
    endless_source source;
    source.url = base + "/delay?ms=5000";
    source.n = 50;
    list_sink sink;
    fetch_options o;
    o.concurrency = 10;
    fetcher f(o);
    auto stopper = [&]() -> task<void> {
      while (f.statistics().in_flight < 10) co_await sleep_for(1ms);
      f.stop("stopped by the test");
    };
    auto stopping = event_loop::current()->spawn(stopper(), "stopper");
    fetch_statistics st = co_await f.run(source, sink);
    co_await stopping;
    EXPECT_EQ(st.read, 50u);
    EXPECT_FALSE(st.input_done);
    EXPECT_EQ(st.errors["cancelled"], 50u);
    co_return std::move(sink.got);
  };
  auto rs = loop.run(main());
  expect_one_result_each(rs, 50);
  for (const auto& r : rs) EXPECT_EQ(r.error_message, "stopped by the test");
}

TEST(FetchEngine, CancellingTheRunStillDeliversEveryInputRead) {
  const std::string base = faults().base_url();
  event_loop loop;
  list_sink sink;
  bool threw = false;
  auto main = [&]() -> task<void> {
    std::vector<std::string> urls(200, base + "/delay?ms=5000");
    vector_source source(inputs_of(urls));
    fetch_options o;  // named: a temporary in a coroutine call trips g++ 12
    try {
      auto limited = with_timeout(50ms, fetch_many(source, sink, o));
      co_await std::move(limited);
    } catch (const timeout_error&) {
      threw = true;
    }
  };
  loop.run(main());
  EXPECT_TRUE(threw);
  ASSERT_FALSE(sink.got.empty());
  std::set<std::uint64_t> seen;
  for (const auto& r : sink.got) {
    EXPECT_TRUE(seen.insert(r.index).second);
    EXPECT_EQ(r.error_kind, "cancelled");
  }
}

TEST(FetchEngine, OrderedDeliveryHoldsABoundedWindow) {
  with_counting_server([](std::uint16_t port, counting_server& counts) -> task<void> {
    std::vector<std::string> urls;
    for (int i = 0; i < 24; ++i)
      urls.push_back("http://127.0.0.1:" + std::to_string(port) + "/sleep/" + std::to_string((i % 4) * 5));
    vector_source source(inputs_of(urls));
    list_sink sink;
    fetch_options o;
    o.concurrency = 16;
    o.ordered = true;
    o.reorder_limit = 3;
    auto st = co_await fetch_many(source, sink, o);
    EXPECT_EQ(st.ok, 24u);
    EXPECT_EQ(sink.got.size(), 24u);
    for (std::size_t i = 0; i < sink.got.size(); ++i) EXPECT_EQ(sink.got[i].index, i);
    EXPECT_LE(counts.most, 3u);  // never more than the reorder limit ahead
  });
}

// A body store in memory that records what happened to each attempt.
struct memory_store final : fetch_body_store {
  std::map<std::string, std::string> saved;
  int opened = 0, committed = 0, discarded = 0;
  struct target final : fetch_body_target {
    memory_store& s;
    std::string name, data;
    bool ended = false;
    target(memory_store& st, std::string n) : s(st), name(std::move(n)) {}
    task<void> write(std::string_view piece) override {
      data.append(piece);
      co_return;
    }
    task<std::string> commit() override {
      s.saved[name] = data;
      ++s.committed;
      ended = true;
      co_return "mem/" + name;
    }
    task<void> discard() override {
      ++s.discarded;
      ended = true;
      co_return;
    }
  };
  std::unique_ptr<fetch_body_target> open(const fetch_input& in, unsigned attempt) override {
    ++opened;
    return std::make_unique<target>(*this, std::to_string(in.index) + "." + std::to_string(attempt));
  }
};

TEST(FetchEngine, BodiesStreamToTheStoreAndFailedAttemptsAreDiscarded) {
  const std::string base = faults().base_url();
  event_loop loop;
  memory_store store;
  auto main = [&]() -> task<std::vector<fetch_result>> {
    std::vector<std::string> urls{base + "/big?bytes=300000", base + "/status?code=503", base + "/chunked"};
    fetch_options o;
    o.body_store = &store;
    o.keep_body = true;  // (ignored for the bodies the store takes)
    o.backoff = 1ms;
    co_return co_await fetch_all(std::move(urls), o);
  };
  auto rs = loop.run(main());
  EXPECT_TRUE(rs[0].ok);
  EXPECT_EQ(rs[0].path, "mem/0.1");
  EXPECT_TRUE(rs[0].body.empty());
  EXPECT_EQ(store.saved["0.1"], std::string(300000, 'x'));
  EXPECT_FALSE(rs[1].ok);
  EXPECT_EQ(rs[1].attempts, 3u);
  EXPECT_TRUE(rs[1].path.empty());
  EXPECT_EQ(store.saved["2.1"], test::fault_server::chunked_text());
  EXPECT_EQ(store.opened, 5);
  EXPECT_EQ(store.committed, 2);
  EXPECT_EQ(store.discarded, 3);
}

TEST(FetchEngine, ErrorKindsAreTheDocumentedOnesOrRejected) {
  std::string message;
  EXPECT_EQ(fetch_error_kind(std::make_exception_ptr(spindle::timeout_error("too slow")), message),
            "timeout");
  EXPECT_EQ(message, "too slow");
  // A spindle error of another kind: rejected, its kind kept in the message.
  EXPECT_EQ(fetch_error_kind(std::make_exception_ptr(spindle::usage_error("bad call")), message), "rejected");
  EXPECT_EQ(message, "usage: bad call");
  EXPECT_EQ(fetch_error_kind(std::make_exception_ptr(std::runtime_error("odd")), message), "rejected");
  EXPECT_EQ(message, "odd");
  EXPECT_EQ(fetch_error_kind(std::make_exception_ptr(42), message), "rejected");
  EXPECT_EQ(message, "unknown exception");
  for (std::string_view k : fetch_error_kinds()) EXPECT_FALSE(k.empty());
}

TEST(FetchEngine, LatencyQuantilesAreWithinTwoPercent) {
  latency_histogram h;
  EXPECT_EQ(h.quantile(0.5), 0);
  // 1..10000 ms in 1 ms steps (and one sample under a microsecond).
  h.add(0.0001);
  for (int i = 1; i <= 10000; ++i) h.add(i);
  EXPECT_EQ(h.count(), 10001u);
  EXPECT_EQ(h.max(), 10000);
  for (double q : {0.5, 0.9, 0.99}) {
    const double want = q * 10001 - 1;  // the rank's value, in ms
    EXPECT_NEAR(h.quantile(q), want, want * 0.02) << q;
  }
  EXPECT_EQ(h.quantile(1.0), 10000);  // never above the largest sample
  EXPECT_LT(h.quantile(0.00001), 0.001);
  latency_histogram small;
  for (int us = 1; us <= 100; ++us) small.add(us / 1000.0);  // exact below 128 us
  EXPECT_NEAR(small.quantile(0.5), 0.0505, 1e-9);
}

// ---- limits shared across loops (spindle fetch --loops) ----------------------------

TEST(FetchLimits, PerHostHoldsForFetchersOnSeveralLoops) {
  with_counting_server([](std::uint16_t port, counting_server& counts) -> task<void> {
    loop_group_options go;
    go.loops = 3;
    go.name = "fetch-limits-test";
    loop_group group(go);
    auto limits = std::make_shared<fetch_limits>(2, 0);
    const std::string origin = "http://127.0.0.1:" + std::to_string(port);
    std::vector<std::string> urls;
    for (int i = 0; i < 16; ++i) urls.push_back(origin + "/sleep/10");
    fetch_options o;
    o.concurrency = 8;  // each fetcher alone would run 8 at once
    o.limits = limits;
    event_loop& here = *event_loop::current();
    std::vector<join_handle<std::vector<fetch_result>>> runs;
    for (std::size_t i = 0; i < group.size(); ++i) {
      auto make = [urls, o]() { return fetch_all(urls, o); };
      auto on_loop = submit_to(group.portal(i), std::move(make), "fetch-on-loop");
      runs.push_back(here.spawn(std::move(on_loop), "fetch-on-loop"));
    }
    for (auto& r : runs) {
      std::vector<fetch_result> rs = co_await r;
      expect_one_result_each(rs, 16);
      for (const auto& x : rs) EXPECT_TRUE(x.ok) << x.error_message;
    }
    EXPECT_EQ(counts.served, 48u);
    EXPECT_LE(counts.most, 2u) << "three fetchers of 8, one limit of 2";
    EXPECT_EQ(counts.most, 2u);
    EXPECT_EQ(limits->in_use("http://127.0.0.1:" + std::to_string(port)), 0u) << "every slot came back";
    const group_shutdown_report stopped = co_await group.stop_async();
    EXPECT_EQ(stopped.loops.size(), group.size());
  });
}

// Awaits `h`; true when it ended cancelled.
task<bool> ended_cancelled(join_handle<void>& h) {
  std::exception_ptr e;
  try {
    co_await h;
  } catch (...) {
    e = std::current_exception();
  }
  co_return error_kind_of(e) == error_kind::cancelled;  // (a null e: error_kind::exception)
}

TEST(FetchLimits, ACancelledWaiterKeepsNoSlot) {
  event_loop loop;
  auto main = [&]() -> task<void> {
    fetch_limits limits(1, 0);
    co_await limits.acquire_host("o");
    EXPECT_EQ(limits.in_use("o"), 1u);
    // Two waiters; the first is cancelled while waiting, the second gets the slot.
    auto b = loop.spawn(limits.acquire_host("o"), "b");
    auto c = loop.spawn(limits.acquire_host("o"), "c");
    co_await yield();
    EXPECT_FALSE(b.done());
    b.cancel();
    const bool b_cancelled = co_await ended_cancelled(b);
    EXPECT_TRUE(b_cancelled);
    EXPECT_FALSE(c.done());
    limits.release_host("o");  // to c (b left the queue)
    co_await c;
    EXPECT_EQ(limits.in_use("o"), 1u);
    // A waiter handed the slot after its cancellation, before it ran: it
    // passes the slot on to the next.
    auto d = loop.spawn(limits.acquire_host("o"), "d");
    auto e = loop.spawn(limits.acquire_host("o"), "e");
    co_await yield();
    d.cancel();
    limits.release_host("o");  // to d, which is cancelled already
    const bool d_cancelled = co_await ended_cancelled(d);
    EXPECT_TRUE(d_cancelled);
    if (!d_cancelled) limits.release_host("o");  // (d took it: no hang either way)
    co_await e;
    EXPECT_EQ(limits.in_use("o"), 1u);
    limits.release_host("o");
    EXPECT_EQ(limits.in_use("o"), 0u);
  };
  loop.run(main());
}

TEST(FetchLimits, TheRateIsSharedByEveryTaker) {
  event_loop loop;
  auto main = [&]() -> task<void> {
    fetch_limits limits(0, 100);  // burst 10
    const time_point start = loop.now();
    std::vector<join_handle<void>> takers;
    for (int i = 0; i < 30; ++i) takers.push_back(loop.spawn(limits.acquire_rate(), "taker"));
    for (auto& t : takers) co_await t;
    EXPECT_GE(loop.now() - start, 190ms) << "the 20 past the burst wait 10 ms each";
  };
  loop.run(main());
}

}  // namespace
}  // namespace spindle::http
