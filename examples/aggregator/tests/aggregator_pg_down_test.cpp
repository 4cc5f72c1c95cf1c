// PostgreSQL going down under a running aggregator. This test has a cluster
// of its own (the CTest fixture `aggregator_pg_down`), which it stops and
// starts again, so the tests sharing the other cluster are not disturbed.

#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "service.hpp"
#include "test_env.hpp"

using namespace std::chrono_literals;
using json = nlohmann::json;
namespace t = aggregator::testing;

TEST(AggregatorPostgresDown, PartialResultsWithTypedErrorsAndTheServiceStaysUp) {
  const t::pg_cluster cluster = t::read_cluster(AGGREGATOR_PG_STATE);
  aggregator::service_options o;
  o.pg_conninfo = cluster.conninfo;
  o.subquery_timeout = 3000ms;
  aggregator::service svc(o);

  auto graph = [&](int id) {
    const t::http_result r = t::http_get(svc.port(), "/graph/" + std::to_string(id));
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body, nullptr, false);
  };

  const json before = graph(3);
  ASSERT_EQ(before["ok"], 12) << before.dump();

  // Stop the server (fast shutdown: it terminates our pooled connections).
  ASSERT_EQ(t::cluster_command("pause", cluster.state_file), 0);
  for (int round = 0; round < 2; ++round) {  // pooled connections first, then fresh attempts
    const json down = graph(3);
    ASSERT_TRUE(down.is_object());
    EXPECT_EQ(down["ok"], 8) << down.dump();
    EXPECT_EQ(down["failed"], 4);
    EXPECT_EQ(down["complete"], false);
    for (const char* name : {"pg.user", "pg.orders", "pg.following", "pg.spend"}) {
      const json& item = down["results"][name];
      EXPECT_EQ(item["ok"], false) << name;
      EXPECT_EQ(item["error"]["kind"], "connect") << name << ": " << item.dump();
      EXPECT_FALSE(item["error"]["message"].get<std::string>().empty());
    }
    for (const char* name : {"sqlite.prefs", "sqlite.score", "http.items", "http.stock"})
      EXPECT_EQ(down["results"][name]["ok"], true) << name;
  }
  // The service itself is fine.
  EXPECT_EQ(t::http_get(svc.port(), "/healthz").status, 200);
  const t::http_result metrics = t::http_get(svc.port(), "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_GE(t::metric(metrics.body, "aggregator_pg_connect_failures_total{"), 8);
  EXPECT_EQ(svc.front_stats().responses_5xx, 0u);

  // Back up: complete answers again, on new connections.
  ASSERT_EQ(t::cluster_command("resume", cluster.state_file), 0);
  const json after = graph(3);
  EXPECT_EQ(after["ok"], 12) << after.dump();
  EXPECT_EQ(after["results"]["pg.user"]["data"][0]["name"], "user 3");
}
