// The aggregator end to end, against a real PostgreSQL (the CTest fixture
// `aggregator_pg` starts a throwaway cluster with scripts/pg-cluster.sh),
// SQLite on its pool and the mock HTTP API.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <vector>

#include "service.hpp"
#include "test_env.hpp"

using namespace std::chrono_literals;
using json = nlohmann::json;
namespace t = aggregator::testing;

namespace {

aggregator::service_options options() {
  aggregator::service_options o;
  o.pg_conninfo = t::read_cluster(AGGREGATOR_PG_STATE).conninfo;
  o.port = 0;
  o.workers = 16;
  o.subquery_timeout = 2000ms;
  return o;
}

// The service's PostgreSQL sessions tagged with `name`: tests that look at
// pg_stat_activity see only their own queries (the cluster is shared, and
// CTest runs tests in parallel).
aggregator::service_options tagged_options(const std::string& name) {
  aggregator::service_options o = options();
  o.pg_conninfo += " application_name=" + name;
  return o;
}

// Our sleeping queries on the server (the FROM ... WHERE part).
std::string sleeping_queries(const std::string& name) {
  return "FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%pg_sleep%' AND application_name = '" +
         name + "' AND pid <> pg_backend_pid()";
}

json get_json(std::uint16_t port, const std::string& target, int expected_status = 200) {
  const t::http_result r = t::http_get(port, target);
  EXPECT_EQ(r.status, expected_status) << target << ": " << r.body;
  return json::parse(r.body, nullptr, false);
}

const std::vector<std::string> all_names = {"pg.user",      "pg.orders",    "pg.following", "pg.spend",
                                            "sqlite.prefs", "sqlite.tags",  "sqlite.views", "sqlite.score",
                                            "http.items",   "http.reviews", "http.pricing", "http.stock"};

// The merged document for user 7, checked against the seed data and
// against the databases themselves.
void expect_user_7(const json& doc, const std::string& conninfo) {
  ASSERT_TRUE(doc.is_object());
  EXPECT_EQ(doc["id"], 7);
  EXPECT_EQ(doc["ok"], 12);
  EXPECT_EQ(doc["failed"], 0);
  EXPECT_EQ(doc["complete"], true);
  const json& r = doc["results"];
  ASSERT_EQ(r.size(), 12u);
  for (const auto& name : all_names) {
    ASSERT_TRUE(r.contains(name)) << name;
    EXPECT_EQ(r[name]["ok"], true) << name << ": " << r[name].dump();
    EXPECT_FALSE(r[name].contains("error")) << name;
    EXPECT_GE(r[name]["elapsed_ms"].get<double>(), 0.0);
  }
  EXPECT_EQ(r["pg.user"]["backend"], "postgresql");
  EXPECT_EQ(r["sqlite.tags"]["backend"], "sqlite");
  EXPECT_EQ(r["http.stock"]["backend"], "http");

  // PostgreSQL: typed columns, and the same numbers as a direct query.
  ASSERT_EQ(r["pg.user"]["data"].size(), 1u);
  EXPECT_EQ(r["pg.user"]["data"][0]["id"], 7);
  EXPECT_EQ(r["pg.user"]["data"][0]["name"], "user 7");
  EXPECT_EQ(r["pg.user"]["data"][0]["email"], "user7@example.com");
  EXPECT_EQ(r["pg.user"]["data"][0]["city"], "Quito");  // ARRAY[...][1 + 7 % 4]
  EXPECT_EQ(r["pg.orders"]["data"].size(), 5u);
  EXPECT_EQ(r["pg.spend"]["data"][0]["orders"],
            std::stoll(t::pg_scalar(conninfo, "SELECT count(*) FROM orders WHERE user_id = 7")));
  EXPECT_EQ(r["pg.spend"]["data"][0]["total_cents"],
            std::stoll(t::pg_scalar(conninfo, "SELECT sum(amount_cents) FROM orders WHERE user_id = 7")));
  EXPECT_EQ(r["pg.following"]["data"].size(),
            std::stoull(t::pg_scalar(conninfo, "SELECT count(*) FROM follows WHERE follower = 7")));

  // SQLite.
  const json& prefs = r["sqlite.prefs"]["data"];
  ASSERT_EQ(prefs.size(), 2u);
  EXPECT_EQ(prefs[0]["key"], "language");
  EXPECT_EQ(prefs[0]["value"], "pt");  // 7 % 3 == 1
  EXPECT_EQ(prefs[1]["key"], "theme");
  EXPECT_EQ(prefs[1]["value"], "light");
  EXPECT_EQ(r["sqlite.tags"]["data"].size(), 2u);
  EXPECT_EQ(r["sqlite.views"]["data"][0]["views"], 20);  // 20,000 views over 1,000 users
  EXPECT_DOUBLE_EQ(r["sqlite.score"]["data"][0]["score"].get<double>(), 25.9);  // 7 * 37 % 1000 / 10
  EXPECT_EQ(r["sqlite.score"]["data"][0]["tier"], "bronze");

  // HTTP.
  EXPECT_EQ(r["http.items"]["data"]["title"], "item 7");
  EXPECT_EQ(r["http.pricing"]["data"]["cents"], 199 + 91);
  EXPECT_EQ(r["http.stock"]["data"]["in_stock"], true);
}

}  // namespace

TEST(Aggregator, GraphMergesAllTwelveBackendsIntoOneDocument) {
  auto o = options();
  aggregator::service svc(o);
  const json doc = get_json(svc.port(), "/graph/7");
  EXPECT_EQ(doc["mode"], "fan_out");
  expect_user_7(doc, o.pg_conninfo);

  // An id with no rows anywhere is an answer, not an error.
  const json none = get_json(svc.port(), "/graph/5000");
  EXPECT_EQ(none["ok"], 12);
  EXPECT_EQ(none["results"]["pg.user"]["data"].size(), 0u);
  EXPECT_EQ(none["results"]["sqlite.prefs"]["data"].size(), 0u);
}

TEST(Aggregator, SequentialModeGivesTheSameDocument) {
  auto o = options();
  aggregator::service svc(o);
  const json seq = get_json(svc.port(), "/graph/7?mode=sequential");
  EXPECT_EQ(seq["mode"], "sequential");
  expect_user_7(seq, o.pg_conninfo);
  const json fan = get_json(svc.port(), "/graph/7?mode=fan_out");
  for (const auto& name : all_names)
    EXPECT_EQ(seq["results"][name]["data"], fan["results"][name]["data"]) << name;
}

TEST(Aggregator, DelayedBackendsStillAnswerAndTheDelayIsApplied) {
  aggregator::service svc(options());
  const json doc = get_json(svc.port(), "/graph/9?delay_ms=30");
  EXPECT_EQ(doc["ok"], 12);
  // Each sub-query waited at least its delay (a lower bound, not a speed).
  for (const auto& name : all_names)
    EXPECT_GE(doc["results"][name]["elapsed_ms"].get<double>(), 29.0) << name;
}

// A sub-query past its timeout is cancelled on the loop; the PostgreSQL
// query is cancelled on the server (nothing left in pg_stat_activity), the
// SQLite job is interrupted, and no dirty connection is reused.
TEST(Aggregator, SubqueryTimeoutCancelsTheQueryOnTheServer) {
  auto o = tagged_options("agg_timeout_test");
  aggregator::service svc(o);
  // Warm the pool up so that the timed-out queries run on pooled connections.
  ASSERT_EQ(get_json(svc.port(), "/graph/11")["ok"], 12);

  const json doc = get_json(svc.port(), "/graph/11?pg_delay_ms=20000&sqlite_delay_ms=20000&timeout_ms=1500");
  EXPECT_EQ(doc["ok"], 4);  // the HTTP ones
  EXPECT_EQ(doc["failed"], 8);
  EXPECT_EQ(doc["complete"], false);
  for (const auto& name : all_names) {
    const json& item = doc["results"][name];
    if (name.rfind("http.", 0) == 0) {
      EXPECT_EQ(item["ok"], true) << name;
    } else {
      EXPECT_EQ(item["ok"], false) << name;
      EXPECT_EQ(item["error"]["kind"], "timeout") << name << ": " << item.dump();
    }
  }

  // No query of ours left on the server (bounded wait for the cancel).
  const std::string leftover = "SELECT count(*) " + sleeping_queries("agg_timeout_test");
  std::string active = "?";
  for (int i = 0; i < 100; ++i) {
    active = t::pg_scalar(o.pg_conninfo, leftover);
    if (active == "0") break;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(active, "0") << "a cancelled query is still running on the server";

  // The cancel requests were sent, and each connection either came back
  // clean or was closed; the SQLite pool is idle again.
  std::string m;
  for (int i = 0; i < 100; ++i) {
    m = svc.metrics();
    if (t::metric(m, "aggregator_pg_connections_cancelling{") == 0 &&
        t::metric(m, "spindle_pool_busy{pool=\"sqlite\"}") == 0)
      break;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(t::metric(m, "aggregator_pg_interrupted_total{"), 4) << m;
  EXPECT_EQ(t::metric(m, "aggregator_pg_cancels_sent_total{"), 4) << m;
  EXPECT_EQ(t::metric(m, "aggregator_pg_recycled_total{") + t::metric(m, "aggregator_pg_discarded_total{"), 4)
      << m;
  EXPECT_EQ(t::metric(m, "aggregator_pg_connections_cancelling{"), 0) << m;
  EXPECT_EQ(t::metric(m, "spindle_pool_busy{pool=\"sqlite\"}"), 0) << m;

  // The pool's connections are clean: the next answers are complete and right.
  for (int i = 0; i < 3; ++i) {
    const json again = get_json(svc.port(), "/graph/7");
    expect_user_7(again, o.pg_conninfo);
  }
}

// The server kills the backends mid-query: those sub-queries fail with
// kind `connection_lost`, the broken connections are not pooled, and the
// next answer is complete.
TEST(Aggregator, ConnectionKilledMidQueryIsConnectionLostAndNotReused) {
  auto o = tagged_options("agg_kill_test");
  o.subquery_timeout = 30'000ms;
  aggregator::service svc(o);
  ASSERT_EQ(get_json(svc.port(), "/graph/13")["ok"], 12);

  json doc;
  std::thread request([&] { doc = get_json(svc.port(), "/graph/13?pg_delay_ms=20000"); });
  // Once the four queries are on the server, terminate their backends.
  const std::string sleeping = sleeping_queries("agg_kill_test");
  std::string active;
  for (int i = 0; i < 200 && active != "4"; ++i) {
    std::this_thread::sleep_for(25ms);
    active = t::pg_scalar(o.pg_conninfo, "SELECT count(*) " + sleeping);
  }
  EXPECT_EQ(active, "4");
  EXPECT_EQ(t::pg_scalar(o.pg_conninfo, "SELECT count(pg_terminate_backend(pid)) " + sleeping), active);
  request.join();

  ASSERT_TRUE(doc.is_object());
  EXPECT_EQ(doc["ok"], 8) << doc.dump();
  for (const char* name : {"pg.user", "pg.orders", "pg.following", "pg.spend"}) {
    const json& item = doc["results"][name];
    EXPECT_EQ(item["ok"], false) << name;
    EXPECT_EQ(item["error"]["kind"], "connection_lost") << name << ": " << item.dump();
  }
  const std::string m = svc.metrics();
  EXPECT_EQ(t::metric(m, "aggregator_pg_discarded_total{"), 4) << m;
  EXPECT_EQ(t::metric(m, "aggregator_pg_interrupted_total{"), 0) << m;
  const json again = get_json(svc.port(), "/graph/7");
  expect_user_7(again, o.pg_conninfo);
}

// The HTTP backend failing: a non-2xx answer is kind `http_status`, an API
// that is not listening is kind `connect`; the other sub-queries answer.
TEST(Aggregator, HttpBackendFailuresAreTyped) {
  aggregator::mock_api api;
  {
    auto o = options();
    o.api_base_url = api.base_url() + "/missing";  // every path 404s
    aggregator::service svc(o);
    const json doc = get_json(svc.port(), "/graph/4");
    EXPECT_EQ(doc["ok"], 8) << doc.dump();
    for (const char* name : {"http.items", "http.reviews", "http.pricing", "http.stock"}) {
      EXPECT_EQ(doc["results"][name]["error"]["kind"], "http_status") << name;
      EXPECT_NE(doc["results"][name]["error"]["message"].get<std::string>().find("404"), std::string::npos)
          << doc["results"][name].dump();
    }
    EXPECT_EQ(doc["results"]["pg.user"]["ok"], true);
  }
  {
    // A port that is bound but not listening: connections to it are
    // refused, and no other process can take it meanwhile.
    const int reserved = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    ASSERT_EQ(::bind(reserved, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ::getsockname(reserved, reinterpret_cast<sockaddr*>(&addr), &len);
    auto o = options();
    o.api_base_url = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
    aggregator::service svc(o);
    const json doc = get_json(svc.port(), "/graph/4");
    EXPECT_EQ(doc["ok"], 8) << doc.dump();
    for (const char* name : {"http.items", "http.reviews", "http.pricing", "http.stock"})
      EXPECT_EQ(doc["results"][name]["error"]["kind"], "connect") << doc["results"][name].dump();
    EXPECT_EQ(doc["results"]["sqlite.tags"]["ok"], true);
    ::close(reserved);
  }
}

TEST(Aggregator, WholeRequestTimeoutIsA504AndTheServiceStaysUp) {
  auto o = options();
  o.request_timeout = 2000ms;
  aggregator::service svc(o);
  const json doc = get_json(svc.port(), "/graph/3?http_delay_ms=30000&timeout_ms=60000", 504);
  EXPECT_EQ(doc["error"]["kind"], "timeout");
  EXPECT_EQ(svc.portal_errors().at("timeout"), 1u);
  const json after = get_json(svc.port(), "/graph/3");
  EXPECT_EQ(after["ok"], 12) << after.dump();  // (which sub-queries failed, and how)
}

TEST(Aggregator, MetricsExposeLoopPoolsAndConnectionPools) {
  aggregator::service svc(options());
  ASSERT_EQ(get_json(svc.port(), "/graph/5")["ok"], 12);
  const t::http_result r = t::http_get(svc.port(), "/metrics");
  ASSERT_EQ(r.status, 200);
  const std::string& m = r.body;
  for (const char* sample :
       {"spindle_loop_tasks_spawned_total{loop=\"aggregator\"}",
        "spindle_portal_calls_total{loop=\"aggregator\"}", "spindle_pool_threads{pool=\"sqlite\"}",
        "spindle_pool_threads{pool=\"pg-cancel\"}", "aggregator_pg_connections_open{pool=\"postgres\"}",
        "spindle_http_client_connections_open{client=", "aggregator_front_workers{server=\"front\"}",
        "aggregator_front_queue_wait_seconds_count{server=\"front\"}",
        "aggregator_front_service_seconds{server=\"front\",quantile=\"0.99\"}",
        "aggregator_subqueries_total{backend=\"postgresql\",outcome=\"ok\"}",
        "aggregator_graph_requests_total{mode=\"fan_out\"}"})
    EXPECT_GE(t::metric(m, sample), 0) << "missing " << sample << " in\n" << m;
  EXPECT_EQ(t::metric(m, "aggregator_subqueries_total{backend=\"sqlite\",outcome=\"ok\"}"), 4);
  EXPECT_EQ(t::metric(m, "aggregator_front_workers{server=\"front\"}"), 16);

  // The reference linter agrees (Debian package `prometheus`).
  const std::string file = ::testing::TempDir() + "aggregator_metrics.txt";
  std::ofstream(file) << m;
  const int rc = std::system(("promtool check metrics < " + file + " > /dev/null").c_str());
  EXPECT_EQ(rc, 0) << "promtool check metrics failed (or promtool is not installed)";
}

TEST(Aggregator, FrontAnswersBadRequestsAndPipelines) {
  aggregator::service svc(options());
  EXPECT_EQ(t::http_get(svc.port(), "/nope").status, 404);
  EXPECT_EQ(t::http_get(svc.port(), "/graph/abc").status, 400);
  EXPECT_EQ(t::http_get(svc.port(), "/graph/0").status, 400);
  EXPECT_EQ(t::http_get(svc.port(), "/graph/1?mode=sideways").status, 400);
  EXPECT_EQ(t::http_get(svc.port(), "/healthz").status, 200);
  {
    t::blocking_client c(svc.port());
    const std::string out = c.raw("GARBAGE\r\n\r\n", 1);
    EXPECT_NE(out.find("\n--\n400\n--\n"), std::string::npos) << out;
  }
  {
    // Two requests in one write: two answers, in order, on one connection.
    t::blocking_client c(svc.port());
    const std::string out =
        c.raw("GET /graph/2 HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 2);
    const auto first = out.find("\"id\":2");
    const auto second = out.find("ok\n");
    EXPECT_NE(first, std::string::npos) << out;
    EXPECT_NE(second, std::string::npos) << out;
    EXPECT_LT(first, second);
  }
  EXPECT_EQ(svc.front_stats().handler_exceptions, 0u);
}

// 64 client connections for a bounded time: every answer a 200, no portal
// error of any kind (no wrong-thread, no loop-running), and the process's
// threads and descriptors the same afterwards as before.
TEST(Aggregator, LoadWithSixtyFourConnectionsIsStable) {
  auto o = options();
  o.subquery_timeout = 5000ms;  // sanitizer builds are slow; a timeout here would be a false alarm
  aggregator::service svc(o);
  constexpr int clients = 64;

  auto run_clients = [&](std::chrono::milliseconds duration, int max_requests, std::atomic<int>& ok,
                         std::atomic<int>& bad, std::atomic<int>& incomplete, std::set<int>& statuses,
                         std::mutex& statuses_mutex) {
    std::vector<std::thread> threads;
    const auto until = std::chrono::steady_clock::now() + duration;
    for (int c = 0; c < clients; ++c) {
      threads.emplace_back([&, c] {
        t::blocking_client client(svc.port());
        for (int i = 0; i < max_requests && std::chrono::steady_clock::now() < until; ++i) {
          const int id = 1 + (c * 131 + i * 17) % 1000;
          const t::http_result r = client.get("/graph/" + std::to_string(id));
          if (r.status == 200) {
            ++ok;
            const json doc = json::parse(r.body, nullptr, false);
            if (!doc.is_object() || doc["id"] != id || doc["ok"] != 12) ++incomplete;
          } else {
            ++bad;
            std::lock_guard lock(statuses_mutex);
            statuses.insert(r.status);
          }
        }
      });
    }
    for (auto& th : threads) th.join();
  };

  std::atomic<int> ok{0}, bad{0}, incomplete{0};
  std::set<int> statuses;
  std::mutex statuses_mutex;
  // Warm-up: every pool grows to its working size.
  run_clients(1500ms, 3, ok, bad, incomplete, statuses, statuses_mutex);
  ASSERT_EQ(bad, 0);

  auto settle = [&] {
    // Idle pooled connections closed, the front's connections gone (their
    // clients have closed), the mock's server side closed too.
    svc.close_idle_connections();
  };
  settle();
  std::size_t fds_before = 0;
  for (int i = 0; i < 100; ++i) {
    std::this_thread::sleep_for(50ms);
    settle();
    const std::size_t f = t::open_fds();
    if (svc.front_stats().connections_open == 0 && f == fds_before) break;
    fds_before = f;
  }
  const std::size_t threads_before = t::thread_count();

  ok = 0;
  run_clients(3000ms, 400, ok, bad, incomplete, statuses, statuses_mutex);
  EXPECT_GT(ok, 0);
  EXPECT_EQ(bad, 0) << "non-200 statuses: " << ::testing::PrintToString(statuses);
  EXPECT_EQ(incomplete, 0);
  const auto front = svc.front_stats();
  EXPECT_EQ(front.responses_5xx, 0u);
  EXPECT_EQ(front.handler_exceptions, 0u);
  EXPECT_TRUE(svc.portal_errors().empty()) << ::testing::PrintToString(svc.portal_errors());
  const std::string m = svc.metrics();
  EXPECT_EQ(t::metric(m, "spindle_portal_answers_total{loop=\"aggregator\",outcome=\"failed\"}"), 0) << m;

  // Stable: the same threads, and (once the connections have closed) the
  // same descriptors.
  EXPECT_EQ(t::thread_count(), threads_before);
  std::size_t fds_after = 0;
  for (int i = 0; i < 200; ++i) {
    settle();
    fds_after = t::open_fds();
    if (svc.front_stats().connections_open == 0 && fds_after == fds_before) break;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(svc.front_stats().connections_open, 0u);
  EXPECT_EQ(fds_after, fds_before);
}
