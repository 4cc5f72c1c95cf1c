#include "spindle/prometheus.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "spindle/event_loop.hpp"
#include "spindle/http/metrics.hpp"
#include "spindle/sleep.hpp"
#include "spindle/thread_pool.hpp"

namespace spindle {
namespace {

using namespace std::chrono_literals;

// A strict reader of the text format (0.0.4): it fails the test on anything
// a Prometheus server would reject or its linter would flag, and returns the
// samples as "name{k=v,...}" -> value (label values unescaped).
struct parsed {
  std::map<std::string, double> samples;
  std::map<std::string, std::string> types;
  std::vector<std::string> errors;
};

bool name_ok(const std::string& n, bool label) {
  if (n.empty()) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    char c = n[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (!label && c == ':') ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

std::string family_of(const std::string& name, const std::map<std::string, std::string>& types) {
  for (const char* suffix : {"_sum", "_count"}) {
    std::string s(suffix);
    if (name.size() > s.size() && name.ends_with(s)) {
      std::string base = name.substr(0, name.size() - s.size());
      auto it = types.find(base);
      if (it != types.end() && it->second == "summary") return base;
    }
  }
  return name;
}

parsed parse(const std::string& text) {
  parsed p;
  std::set<std::string> helped, finished;
  std::string current;  // the family whose samples are being read
  std::istringstream in(text);
  std::string line;
  int n = 0;
  if (text.empty() || text.back() != '\n') p.errors.push_back("no final newline");
  while (std::getline(in, line)) {
    ++n;
    auto err = [&](const std::string& what) {
      p.errors.push_back("line " + std::to_string(n) + ": " + what + ": " + line);
    };
    if (line.empty()) continue;
    if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) {
      std::string rest = line.substr(7);
      auto sp = rest.find(' ');
      std::string name = rest.substr(0, sp);
      if (!name_ok(name, false)) err("bad family name");
      if (line[2] == 'H') {
        if (!helped.insert(name).second) err("second HELP");
      } else {
        std::string type = sp == std::string::npos ? "" : rest.substr(sp + 1);
        if (type != "counter" && type != "gauge" && type != "summary" && type != "histogram" &&
            type != "untyped")
          err("bad type");
        if (!p.types.emplace(name, type).second) err("second TYPE");
        if (type == "counter" && !name.ends_with("_total")) err("counter without _total");
        if (!helped.count(name)) err("TYPE without HELP");
      }
      if (name != current) {
        if (finished.count(name)) err("family split in two");
        if (!current.empty()) finished.insert(current);
        current = name;
      }
      continue;
    }
    if (line[0] == '#') continue;
    // name{labels} value
    std::size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    std::string name = line.substr(0, i);
    if (!name_ok(name, false)) err("bad metric name");
    std::string key = name + "{";
    if (i < line.size() && line[i] == '{') {
      ++i;
      bool first = true;
      std::set<std::string> seen;
      while (i < line.size() && line[i] != '}') {
        if (!first) {
          if (line[i] != ',') {
            err("expected ,");
            break;
          }
          ++i;
        }
        first = false;
        std::size_t eq = line.find('=', i);
        if (eq == std::string::npos) {
          err("label without =");
          break;
        }
        std::string lname = line.substr(i, eq - i);
        if (!name_ok(lname, true) || lname.starts_with("__")) err("bad label name");
        if (!seen.insert(lname).second) err("repeated label");
        i = eq + 1;
        if (i >= line.size() || line[i] != '"') {
          err("label value not quoted");
          break;
        }
        ++i;
        std::string value;
        bool closed = false;
        while (i < line.size()) {
          char c = line[i++];
          if (c == '\\') {
            if (i >= line.size()) break;
            char e = line[i++];
            if (e == 'n') {
              value += '\n';
            } else if (e == '\\' || e == '"') {
              value += e;
            } else {
              err("bad escape");
            }
          } else if (c == '"') {
            closed = true;
            break;
          } else {
            value += c;
          }
        }
        if (!closed) err("unterminated label value");
        key += lname + "=" + value + ",";
      }
      if (i >= line.size() || line[i] != '}') err("unterminated labels");
      ++i;
    }
    key += "}";
    if (i >= line.size() || line[i] != ' ') {
      err("no value");
      continue;
    }
    std::string v = line.substr(i + 1);
    char* end = nullptr;
    double value = (v == "+Inf") ? HUGE_VAL : (v == "-Inf") ? -HUGE_VAL : std::strtod(v.c_str(), &end);
    if (v != "+Inf" && v != "-Inf" && v != "NaN" && (end == nullptr || *end != '\0' || v.empty()))
      err("bad value");
    const std::string family = family_of(name, p.types);
    if (!p.types.count(family)) err("sample before its TYPE");
    if (family != current) err("sample outside its family's block");
    if (!p.samples.emplace(key, value).second) err("duplicate series");
  }
  return p;
}

TEST(Prometheus, LoopAndPoolStatisticsParseAndCarryTheirValues) {
  thread_pool pool({.name = "files", .threads = 1});
  event_loop loop({.name = "main"});
  auto work = [&]() -> task<void> {
    for (int i = 0; i < 5; ++i) co_await run_blocking(pool, [] {});
    co_await sleep_for(1ms);
  };
  loop.run(work());
  prometheus_exposition e;
  e.add(loop.statistics());
  loop_statistics other;
  other.name = "second \"loop\"\\\n";
  other.tasks_alive = 3;
  other.longest_stall = 250ms;
  e.add(other);
  e.add(pool.statistics());
  portal_statistics ps;
  ps.submitted = 7;
  ps.timed_out = 2;
  e.add(ps, "main");
  const std::string text = e.str();
  parsed p = parse(text);
  for (const auto& error : p.errors) ADD_FAILURE() << error;
  EXPECT_EQ(p.samples.at("spindle_loop_tasks_completed_total{loop=main,}"), 1.0);
  EXPECT_EQ(p.samples.at("spindle_loop_tasks_alive{loop=second \"loop\"\\\n,}"), 3.0);
  EXPECT_DOUBLE_EQ(p.samples.at("spindle_loop_longest_stall_seconds{loop=second \"loop\"\\\n,}"), 0.25);
  EXPECT_EQ(p.samples.at("spindle_pool_completed_total{pool=files,}"), 5.0);
  EXPECT_EQ(p.samples.at("spindle_pool_run_seconds_count{pool=files,}"), 5.0);
  EXPECT_TRUE(p.samples.count("spindle_pool_run_seconds{pool=files,quantile=0.99,}"));
  EXPECT_EQ(p.samples.at("spindle_portal_answers_total{loop=main,outcome=timeout,}"), 2.0);
  EXPECT_EQ(p.types.at("spindle_pool_queue_wait_seconds"), "summary");
  EXPECT_EQ(p.types.at("spindle_loop_steps_total"), "counter");
  // Two loops, one family block each.
  EXPECT_EQ(text.find("# TYPE spindle_loop_tasks_alive"), text.rfind("# TYPE spindle_loop_tasks_alive"));
}

// Every defence of the HTTP server (issue #15) is a family of its own,
// carrying its counter; timeouts are one family labelled by phase.
TEST(Prometheus, ServerDefencesAreFamiliesWithTheirValues) {
  http::server_statistics s;
  s.connections_evicted = 3;
  s.fd_exhaustion = 4;
  s.connections_shed = 5;
  s.heads_rejected = 6;
  s.bodies_rejected = 7;
  s.bodies_deferred = 8;
  s.header_timeouts = 9;
  s.body_timeouts = 10;
  s.send_timeouts = 11;
  prometheus_exposition e;
  http::add_metrics(e, s, "front");
  const parsed p = parse(e.str());
  for (const auto& error : p.errors) ADD_FAILURE() << error;
  EXPECT_EQ(p.samples.at("spindle_http_server_connections_evicted_total{server=front,}"), 3.0);
  EXPECT_EQ(p.samples.at("spindle_http_server_fd_exhaustion_total{server=front,}"), 4.0);
  EXPECT_EQ(p.samples.at("spindle_http_server_connections_shed_total{server=front,}"), 5.0);
  EXPECT_EQ(p.samples.at("spindle_http_server_heads_rejected_total{server=front,}"), 6.0);
  EXPECT_EQ(p.samples.at("spindle_http_server_bodies_rejected_total{server=front,}"), 7.0);
  EXPECT_EQ(p.samples.at("spindle_http_server_bodies_deferred_total{server=front,}"), 8.0);
  EXPECT_EQ(p.samples.at("spindle_http_server_timeouts_total{server=front,phase=header,}"), 9.0);
  EXPECT_EQ(p.samples.at("spindle_http_server_timeouts_total{server=front,phase=body,}"), 10.0);
  EXPECT_EQ(p.samples.at("spindle_http_server_timeouts_total{server=front,phase=send,}"), 11.0);
  EXPECT_EQ(p.types.at("spindle_http_server_timeouts_total"), "counter");
}

TEST(Prometheus, TheParserRejectsWhatPrometheusWould) {
  // The checks above are only worth something if the parser can fail.
  EXPECT_FALSE(parse("x_total 1\n").errors.empty());                                   // no TYPE
  EXPECT_FALSE(parse("# HELP x h\n# TYPE x counter\nx 1\n").errors.empty());           // no _total
  EXPECT_FALSE(parse("# HELP x h\n# TYPE x gauge\nx{a=\"b} 1\n").errors.empty());      // unterminated
  EXPECT_FALSE(parse("# HELP x h\n# TYPE x gauge\nx{a=\"b\"} one\n").errors.empty());  // value
  EXPECT_FALSE(parse("# HELP x h\n# TYPE x gauge\nx 1\nx 2\n").errors.empty());        // duplicate
  EXPECT_FALSE(parse("# HELP x h\n# TYPE x gauge\n# HELP y h\n# TYPE y gauge\ny 1\nx 1\n").errors.empty());
  EXPECT_TRUE(parse("# HELP x h\n# TYPE x gauge\nx{a=\"q\\\"\"} 1.5\n").errors.empty());
}

TEST(Prometheus, BadNamesAndMixedFamiliesAreUsageErrors) {
  prometheus_exposition e;
  EXPECT_THROW(e.add_sample("2bad", metric_type::gauge, "h", {}, 1), usage_error);
  EXPECT_THROW(e.add_sample("requests", metric_type::counter, "h", {}, 1), usage_error);
  EXPECT_THROW(e.add_sample("ok", metric_type::gauge, "h", {{"bad-label", "v"}}, 1), usage_error);
  e.add_sample("ok", metric_type::gauge, "h", {{"a", "1"}}, 1);
  EXPECT_THROW(e.add_sample("ok", metric_type::gauge, "other help", {{"a", "2"}}, 1), usage_error);
  EXPECT_THROW(e.add_sample("ok", metric_type::summary, "h", {}, 1), usage_error);
  e.add_sample("ok", metric_type::gauge, "h", {{"a", "2"}}, 0.1);
  EXPECT_EQ(e.str(), "# HELP ok h\n# TYPE ok gauge\nok{a=\"1\"} 1\nok{a=\"2\"} 0.1\n");
}

TEST(Prometheus, RenderPrometheusOfLoopsAndPools) {
  loop_statistics a;
  a.name = "a";
  pool_statistics p;
  p.name = "p";
  p.queued = 4;
  const std::string text = render_prometheus({a}, {p});
  parsed r = parse(text);
  for (const auto& error : r.errors) ADD_FAILURE() << error;
  EXPECT_EQ(r.samples.at("spindle_pool_queued{pool=p,}"), 4.0);
  EXPECT_EQ(r.samples.at("spindle_loop_tasks_alive{loop=a,}"), 0.0);
}

}  // namespace
}  // namespace spindle
