#include "spindle/net/dns.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "spindle/cancel_scope.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/join_handle.hpp"
#include "spindle/sleep.hpp"
#include "support/fake_dns_server.hpp"
#include "support/test_support.hpp"

namespace spindle::net {
namespace {

using namespace std::chrono_literals;
using test::fake_dns_server;

constexpr auto v4 = address_family::ipv4;
constexpr auto v6 = address_family::ipv6;

resolver_options options_for(const fake_dns_server& server) {
  resolver_options o;
  o.servers = server.servers();
  o.query_timeout = 1000ms;
  o.tries = 3;
  return o;
}

std::vector<std::string> texts(const std::vector<socket_address>& v) {
  std::vector<std::string> out;
  for (const auto& a : v) out.push_back(a.to_string());
  return out;
}

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

using strings = std::vector<std::string>;

TEST(Dns, LiteralsAndLocalhostNeedNoQuery) {
  fake_dns_server server;
  event_loop loop;
  resolver r(loop, options_for(server));
  EXPECT_EQ(texts(loop.run(r.resolve("127.0.0.1", 80))), strings{"127.0.0.1:80"});
  EXPECT_EQ(texts(loop.run(r.resolve("::1", 443))), strings{"[::1]:443"});
  EXPECT_EQ(texts(loop.run(r.resolve("[2001:db8::5]", 8080, v6))), strings{"[2001:db8::5]:8080"});
  EXPECT_EQ(texts(loop.run(r.resolve("localhost", 80))), (strings{"127.0.0.1:80", "[::1]:80"}));
  EXPECT_EQ(texts(loop.run(r.resolve("localhost", 80, v4))), strings{"127.0.0.1:80"});
  EXPECT_EQ(texts(loop.run(r.resolve("LocalHost.", 80, v6))), strings{"[::1]:80"});
  EXPECT_EQ(texts(loop.run(r.resolve("db.localhost", 5432, v4))), strings{"127.0.0.1:5432"});
  // A literal of the other family has no address to give.
  EXPECT_THROW((void)loop.run(r.resolve("::1", 80, v4)), dns_error);
  EXPECT_THROW((void)loop.run(r.resolve("10.0.0.1", 80, v6)), dns_error);

  EXPECT_EQ(server.total_queries(), 0u);
  resolver_statistics s = r.statistics();
  EXPECT_EQ(s.lookups, 9u);
  EXPECT_EQ(s.literal, 9u);
  EXPECT_EQ(s.queries, 0u);
  EXPECT_EQ(s.failures, 2u);
  EXPECT_EQ(s.cached_names, 0u);
}

TEST(Dns, ResolvesARecordsInOrderWithThePortSet) {
  fake_dns_server server;
  server.add("www.example.test", {"203.0.113.1", "203.0.113.2", "203.0.113.3"});
  event_loop loop;
  resolver r(loop, options_for(server));
  std::vector<socket_address> got;
  auto body = [&]() -> task<void> {
    // The host is a temporary that lives across the suspension (the g++ 12
    // relocation pitfall in DEVELOPERS.md would crash here).
    got = co_await r.resolve("www.example.test", 8080, v4);
  };
  loop.run(body());
  EXPECT_EQ(texts(got), (strings{"203.0.113.1:8080", "203.0.113.2:8080", "203.0.113.3:8080"}));
  EXPECT_EQ(server.queries("www.example.test", fake_dns_server::type_a), 1u);
  EXPECT_EQ(server.queries("www.example.test", fake_dns_server::type_aaaa), 0u);
  EXPECT_EQ(r.statistics().queries, 1u);
  EXPECT_EQ(r.statistics().in_flight, 0u);
  EXPECT_EQ(loop.statistics().tasks_alive, 0u);
  EXPECT_TRUE(loop.last_shutdown_report().clean()) << loop.last_shutdown_report().to_string();
}

TEST(Dns, ResolvesAaaaRecords) {
  fake_dns_server server;
  server.add("six.test", {"2001:db8::1"});
  event_loop loop;
  resolver r(loop, options_for(server));
  EXPECT_EQ(texts(loop.run(r.resolve("six.test", 443, v6))), strings{"[2001:db8::1]:443"});
  EXPECT_EQ(server.queries("six.test", fake_dns_server::type_aaaa), 1u);
  EXPECT_EQ(server.queries("six.test", fake_dns_server::type_a), 0u);
}

TEST(Dns, FamilyFilterAsksOnlyForThatFamily) {
  fake_dns_server server;
  server.add("dual.test", {"203.0.113.9", "2001:db8::9"});
  event_loop loop;
  resolver r(loop, options_for(server));
  EXPECT_EQ(texts(loop.run(r.resolve("dual.test", 80, v4))), strings{"203.0.113.9:80"});
  EXPECT_EQ(server.queries("dual.test", fake_dns_server::type_aaaa), 0u);
  EXPECT_EQ(texts(loop.run(r.resolve("dual.test", 80, v6))), strings{"[2001:db8::9]:80"});
  EXPECT_EQ(server.queries("dual.test", fake_dns_server::type_a), 1u);
  // Both families: both queries, both addresses (in the order c-ares sorts
  // them for this machine's routes).
  EXPECT_EQ(sorted(texts(loop.run(r.resolve("dual.test", 80)))),
            (strings{"203.0.113.9:80", "[2001:db8::9]:80"}));
  EXPECT_EQ(server.queries("dual.test", fake_dns_server::type_a), 2u);
  EXPECT_EQ(server.queries("dual.test", fake_dns_server::type_aaaa), 2u);
  // A name with addresses of one family only has none of the other.
  server.add("only4.test", {"203.0.113.4"});
  EXPECT_THROW((void)loop.run(r.resolve("only4.test", 80, v6)), dns_error);
  EXPECT_EQ(texts(loop.run(r.resolve("only4.test", 80))), strings{"203.0.113.4:80"});
}

TEST(Dns, NxdomainThrowsDnsErrorNamingTheHost) {
  fake_dns_server server;
  event_loop loop;
  resolver r(loop, options_for(server));
  std::string kind;
  std::string message;
  auto body = [&]() -> task<void> {
    try {
      (void)co_await r.resolve("nx.test", 80);
    } catch (const dns_error& e) {
      kind = e.kind();
      message = e.what();
    }
  };
  loop.run(body());
  EXPECT_EQ(kind, "dns");
  EXPECT_EQ(message, "dns: lookup of 'nx.test' failed: Domain name not found");
  EXPECT_GE(server.queries("nx.test"), 1u);
  EXPECT_EQ(r.statistics().failures, 1u);
  EXPECT_EQ(r.statistics().cached_names, 0u);  // failures are not cached
}

TEST(Dns, InvalidHostNamesThrowWithoutAQuery) {
  fake_dns_server server;
  event_loop loop;
  resolver r(loop, options_for(server));
  const std::vector<std::string> bad = {"",
                                        "bad host.test",
                                        "a..b.test",
                                        ".lead.test",
                                        "exa$mple.test",
                                        "tab\t.test",
                                        ".",
                                        std::string(64, 'a') + ".test",
                                        std::string(250, 'a') + ".test"};
  for (const auto& host : bad) {
    std::string message;
    try {
      (void)loop.run(r.resolve(host, 80));
    } catch (const dns_error& e) {
      message = e.what();
    }
    EXPECT_EQ(message.rfind("dns: lookup of '", 0), 0u) << "host '" << host << "': " << message;
  }
  std::string message;
  try {
    (void)loop.run(r.resolve("", 80));
  } catch (const dns_error& e) {
    message = e.what();
  }
  EXPECT_EQ(message, "dns: lookup of '' failed: empty host name");
  EXPECT_EQ(server.total_queries(), 0u);
  EXPECT_EQ(r.statistics().queries, 0u);
  EXPECT_EQ(r.statistics().failures, bad.size() + 1);
}

TEST(Dns, UnansweredQueryTimesOutInCaresOnRealTime) {
  fake_dns_server server;
  server.never_answer("hang.test");
  test::manual_loop m;
  resolver_options o = options_for(server);
  o.query_timeout = 100ms;
  o.tries = 1;
  resolver r(m.loop, o);
  std::string message;
  try {
    (void)m.loop.run(r.resolve("hang.test", 80, v4));
  } catch (const dns_error& e) {
    message = e.what();
  }
  EXPECT_EQ(message, "dns: lookup of 'hang.test' failed: Timeout while contacting DNS servers");
  EXPECT_GE(server.queries("hang.test"), 1u);
  // c-ares' timeouts run on CLOCK_MONOTONIC (a timerfd), not on the loop's
  // clock: the manual clock never moved.
  EXPECT_EQ(m.elapsed(), 0s);
  EXPECT_EQ(r.statistics().in_flight, 0u);
}

TEST(Dns, WithTimeoutAroundResolveThrowsTimeoutError) {
  fake_dns_server server;
  server.never_answer("hang.test");
  test::manual_loop m;
  resolver r(m.loop, options_for(server));  // c-ares would wait 3 x 1 s
  bool timed_out = false;
  std::uint64_t in_flight_after = 99;
  auto body = [&]() -> task<void> {
    try {
      (void)co_await with_timeout(5s, r.resolve("hang.test", 80));
    } catch (const timeout_error&) {
      timed_out = true;
    }
    in_flight_after = r.statistics().in_flight;
  };
  m.loop.run(body());
  EXPECT_TRUE(timed_out);
  // The caller's deadline is on the loop's clock: exactly 5 s of it.
  EXPECT_EQ(m.elapsed(), 5s);
  EXPECT_EQ(in_flight_after, 0u);  // nobody waits: the query was cancelled in c-ares
  EXPECT_TRUE(m.loop.last_shutdown_report().clean()) << m.loop.last_shutdown_report().to_string();
}

TEST(Dns, CacheAnswersWithinTheTtlAndAsksAgainAfter) {
  fake_dns_server server;
  server.add("cached.test", {"203.0.113.7"}, 30);
  test::manual_loop m;
  resolver r(m.loop, options_for(server));
  std::vector<std::size_t> counts;
  std::vector<std::string> answers;
  auto lookup = [&](std::uint16_t port) -> task<void> {
    auto got = co_await r.resolve("cached.test", port, v4);
    answers.push_back(got.empty() ? "" : got.front().to_string());
    counts.push_back(server.queries("cached.test"));
  };
  auto body = [&]() -> task<void> {
    co_await lookup(80);
    co_await lookup(81);  // from the cache, with its own port
    m.clock.advance(29s);
    co_await lookup(82);  // still within the TTL
    m.clock.advance(2s);
    co_await lookup(83);  // expired: asked again
    co_await lookup(84);  // and cached again
  };
  m.loop.run(body());
  EXPECT_EQ(counts, (std::vector<std::size_t>{1, 1, 1, 2, 2}));
  EXPECT_EQ(answers, (strings{"203.0.113.7:80", "203.0.113.7:81", "203.0.113.7:82", "203.0.113.7:83",
                              "203.0.113.7:84"}));
  EXPECT_EQ(r.statistics().cache_hits, 3u);
  EXPECT_EQ(r.statistics().queries, 2u);
  EXPECT_EQ(r.statistics().cached_names, 1u);
}

TEST(Dns, MaxTtlCapsTheCacheAndZeroTtlIsNotCached) {
  fake_dns_server server;
  server.add("long.test", {"203.0.113.8"}, 86400);
  server.add("zero.test", {"203.0.113.9"}, 0);
  test::manual_loop m;
  resolver_options o = options_for(server);
  o.max_ttl = 10s;
  resolver r(m.loop, o);
  auto body = [&]() -> task<void> {
    (void)co_await r.resolve("long.test", 80, v4);
    m.clock.advance(9s);
    (void)co_await r.resolve("long.test", 80, v4);
    m.clock.advance(2s);
    (void)co_await r.resolve("long.test", 80, v4);
    (void)co_await r.resolve("zero.test", 80, v4);
    (void)co_await r.resolve("zero.test", 80, v4);
  };
  m.loop.run(body());
  EXPECT_EQ(server.queries("long.test"), 2u);
  EXPECT_EQ(server.queries("zero.test"), 2u);
  EXPECT_EQ(r.statistics().cached_names, 1u);
}

TEST(Dns, CacheEvictsTheLeastRecentlyUsedName) {
  fake_dns_server server;
  for (const char* n : {"a.test", "b.test", "c.test"}) server.add(n, {"203.0.113.1"});
  event_loop loop;
  resolver_options o = options_for(server);
  o.cache_capacity = 2;
  resolver r(loop, o);
  auto body = [&]() -> task<void> {
    for (const char* n : {"a.test", "b.test", "a.test", "c.test", "a.test", "b.test"}) {
      (void)co_await r.resolve(n, 80, v4);
    }
  };
  loop.run(body());
  // c.test evicted b.test (a.test had just been used); a.test stayed.
  EXPECT_EQ(server.queries("a.test"), 1u);
  EXPECT_EQ(server.queries("b.test"), 2u);
  EXPECT_EQ(server.queries("c.test"), 1u);
  EXPECT_EQ(r.statistics().cached_names, 2u);
  EXPECT_EQ(r.statistics().cache_hits, 2u);
}

TEST(Dns, CancelledLookupLeavesTheLoopClean) {
  fake_dns_server server;
  server.never_answer("hang.test");
  test::manual_loop m;
  const std::size_t fds_before = test::open_fd_count();
  {
    resolver r(m.loop, options_for(server));
    const std::size_t fds_with_resolver = test::open_fd_count();
    bool cancelled = false;
    std::uint64_t in_flight_during = 0;
    std::uint64_t in_flight_after = 99;
    std::size_t fds_during = 0;
    std::size_t fds_after = 0;
    std::uint64_t tasks_after = 0;
    auto body = [&]() -> task<void> {
      auto h = m.loop.spawn(r.resolve("hang.test", 80, v4), "lookup");
      co_await yield();  // the lookup runs and sends its query
      in_flight_during = r.statistics().in_flight;
      fds_during = test::open_fd_count();
      h.cancel();
      try {
        (void)co_await h;
      } catch (const cancelled_error&) {
        cancelled = true;
      }
      in_flight_after = r.statistics().in_flight;
      fds_after = test::open_fd_count();
      tasks_after = m.loop.statistics().tasks_alive;
    };
    m.loop.run(body());
    EXPECT_TRUE(cancelled);
    EXPECT_EQ(in_flight_during, 1u);
    EXPECT_EQ(fds_during, fds_with_resolver + 1);  // c-ares' UDP socket
    EXPECT_EQ(in_flight_after, 0u);
    EXPECT_EQ(fds_after, fds_with_resolver);  // closed when the query was cancelled
    EXPECT_EQ(tasks_after, 1u);               // only the main task: no pump left
    EXPECT_EQ(m.loop.statistics().tasks_alive, 0u);
    // Nothing was alive when the main task ended.
    EXPECT_TRUE(m.loop.last_shutdown_report().clean()) << m.loop.last_shutdown_report().to_string();
    EXPECT_EQ(m.elapsed(), 0s);
  }
  EXPECT_EQ(test::open_fd_count(), fds_before);  // and the timerfd went with the resolver
}

TEST(Dns, ResolveIsACancellationPointEvenWhenAnsweredAtOnce) {
  event_loop loop;
  resolver r(loop);
  bool checkpoint = false;
  auto inner = [&]() -> task<void> {
    try {
      co_await sleep_for(1h);
    } catch (const cancelled_error&) {
      // Swallowed: cancellation is sticky, the next cancellation point throws again.
    }
    try {
      (void)co_await r.resolve("127.0.0.1", 80);
    } catch (const cancelled_error&) {
      checkpoint = true;
    }
  };
  auto body = [&]() -> task<void> {
    auto h = loop.spawn(inner(), "inner");
    co_await yield();
    h.cancel();
    co_await h;
  };
  loop.run(body());
  EXPECT_TRUE(checkpoint);
}

TEST(Dns, CancellingOneOfTwoWaitersKeepsTheSharedQuery) {
  fake_dns_server server;
  server.add("shared.test", {"203.0.113.5"});
  event_loop loop;
  resolver r(loop, options_for(server));
  bool first_cancelled = false;
  std::vector<socket_address> second;
  auto body = [&]() -> task<void> {
    auto h1 = loop.spawn(r.resolve("shared.test", 80, v4), "first");
    auto h2 = loop.spawn(r.resolve("shared.test", 81, v4), "second");
    co_await yield();  // both wait for one query
    h1.cancel();
    try {
      (void)co_await h1;
    } catch (const cancelled_error&) {
      first_cancelled = true;
    }
    second = co_await h2;
  };
  loop.run(body());
  EXPECT_TRUE(first_cancelled);
  EXPECT_EQ(texts(second), strings{"203.0.113.5:81"});
  EXPECT_EQ(server.queries("shared.test"), 1u);
  EXPECT_EQ(r.statistics().queries, 1u);
  EXPECT_EQ(r.statistics().lookups, 2u);
}

TEST(Dns, DestroyingTheResolverFailsTheLookupsInFlight) {
  fake_dns_server server;
  server.never_answer("hang.test");
  test::manual_loop m;
  const std::size_t fds_before = test::open_fd_count();
  auto r = std::make_unique<resolver>(m.loop, options_for(server));
  std::string message;
  auto body = [&]() -> task<void> {
    auto h = m.loop.spawn(r->resolve("hang.test", 80), "lookup");
    co_await yield();  // the query is out
    r.reset();
    try {
      (void)co_await h;
    } catch (const dns_error& e) {
      message = e.what();
    }
  };
  m.loop.run(body());
  EXPECT_EQ(message, "dns: lookup of 'hang.test' failed: Channel is being destroyed");
  EXPECT_EQ(test::open_fd_count(), fds_before);
  EXPECT_TRUE(m.loop.last_shutdown_report().clean()) << m.loop.last_shutdown_report().to_string();
}

TEST(Dns, ManyConcurrentLookupsAreAllAnswered) {
  constexpr int n = 200;
  fake_dns_server server;
  std::vector<std::string> names;
  std::vector<std::string> expected;
  for (int i = 0; i < n; ++i) {
    names.push_back("host" + std::to_string(i) + ".test");
    std::string ip = "10.1." + std::to_string(i / 100) + "." + std::to_string(i % 100);
    server.add(names.back(), {ip});
    expected.push_back(ip + ":" + std::to_string(1000 + i));
  }
  event_loop loop;
  resolver_options o = options_for(server);
  o.query_timeout = 500ms;  // a datagram dropped under load is sent again soon
  o.tries = 4;
  resolver r(loop, o);
  std::vector<std::string> got(n);
  std::uint64_t peak_in_flight = 0;
  auto body = [&]() -> task<void> {
    std::vector<join_handle<std::vector<socket_address>>> handles;
    for (int i = 0; i < n; ++i) {
      handles.push_back(loop.spawn(
          r.resolve(names[static_cast<std::size_t>(i)], static_cast<std::uint16_t>(1000 + i), v4)));
    }
    co_await yield();  // every lookup has sent its query
    peak_in_flight = r.statistics().in_flight;
    for (int i = 0; i < n; ++i) {
      auto v = co_await handles[static_cast<std::size_t>(i)];
      got[static_cast<std::size_t>(i)] = v.size() == 1 ? v.front().to_string() : "?";
    }
  };
  loop.run(body());
  EXPECT_EQ(got, expected);
  EXPECT_GT(peak_in_flight, 1u);
  EXPECT_EQ(r.statistics().queries, static_cast<std::uint64_t>(n));
  EXPECT_EQ(r.statistics().in_flight, 0u);
  EXPECT_EQ(r.statistics().failures, 0u);
  EXPECT_TRUE(loop.last_shutdown_report().clean()) << loop.last_shutdown_report().to_string();
}

TEST(Dns, TruncatedAnswerIsRetriedOverTcp) {
  fake_dns_server server;
  server.add("big.test", {"203.0.113.21", "203.0.113.22", "203.0.113.23", "203.0.113.24"});
  server.tcp_only("big.test");
  event_loop loop;
  resolver r(loop, options_for(server));
  auto got = texts(loop.run(r.resolve("big.test", 25, v4)));
  EXPECT_EQ(got, (strings{"203.0.113.21:25", "203.0.113.22:25", "203.0.113.23:25", "203.0.113.24:25"}));
  // Over TCP, the length word and the message arrive together; c-ares 1.18
  // reads them in two calls, so this hangs (until c-ares' timeout, then
  // fails) if the pump waits for a new edge between them.
  EXPECT_GE(server.tcp_queries(), 1u);
  EXPECT_EQ(r.statistics().failures, 0u);
}

TEST(Dns, ResolverKeepsWorkingAcrossRunsOfItsLoop) {
  fake_dns_server server;
  server.add("one.test", {"203.0.113.31"});
  server.add("two.test", {"203.0.113.32"});
  server.never_answer("hang.test");
  event_loop loop;
  resolver r(loop, options_for(server));
  EXPECT_EQ(texts(loop.run(r.resolve("one.test", 80, v4))), strings{"203.0.113.31:80"});
  // A run that ends with a lookup still waiting: the shutdown phase cancels it.
  auto abandon = [&]() -> task<void> {
    loop.spawn(r.resolve("hang.test", 80, v4), "abandoned").detach();
    co_await yield();
  };
  loop.run(abandon());
  EXPECT_EQ(loop.statistics().tasks_alive, 0u);
  EXPECT_EQ(r.statistics().in_flight, 0u);
  EXPECT_EQ(texts(loop.run(r.resolve("two.test", 80, v4))), strings{"203.0.113.32:80"});
}

TEST(Dns, ResolverBelongsToItsLoopsThread) {
  event_loop loop;
  bool threw = false;
  std::thread other([&] {
    try {
      resolver r(loop);
    } catch (const wrong_thread_error&) {
      threw = true;
    }
  });
  other.join();
  EXPECT_TRUE(threw);
}

}  // namespace
}  // namespace spindle::net
