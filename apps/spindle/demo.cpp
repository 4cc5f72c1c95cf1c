// The scenes of `spindle demo`. Each runs against the embedded mock API
// (mock_api.hpp) on 127.0.0.1, prints what happened with its numbers, and
// checks it: a scene that does not show what it claims fails the demo.

#include "demo.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <ranges>
#include <thread>

#include "mock_api.hpp"
#include "spindle/background_loop.hpp"
#include "spindle/gather.hpp"
#include "spindle/http/client.hpp"
#include "spindle/portal.hpp"
#include "spindle/sleep.hpp"
#include "spindle/spindle.hpp"

namespace spindle::cli {

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

double seconds_since(steady::time_point t) {
  return std::chrono::duration<double>(steady::now() - t).count();
}

struct scene {
  const char* name;
  const char* title;
  int (*run)(mock_api& api);
};

// A check that prints its verdict; returns 1 on failure.
int check(bool ok, const char* what) {
  std::printf("   %s %s\n", ok ? "ok:" : "NOT AS EXPECTED:", what);
  return ok ? 0 : 1;
}

// ---- 1. sequential vs concurrent ---------------------------------------------

int scene_sequential(mock_api& api) {
  constexpr int items = 200;
  constexpr int delay_ms = 20;
  const std::string base = api.base_url();
  std::printf("   200 items; the API answers each after %d ms.\n", delay_ms);
  event_loop loop({.name = "demo"});
  auto url = [&](int i) {
    return base + "/items/" + std::to_string(i) + "?delay_ms=" + std::to_string(delay_ms);
  };
  double sequential = 0, concurrent = 0;
  std::size_t ok_seq = 0, ok_conc = 0;
  auto main = [&]() -> task<void> {
    http::client c;
    auto t0 = steady::now();
    for (int i = 0; i < items; ++i) ok_seq += (co_await c.get(url(i))).ok();
    sequential = seconds_since(t0);
    http::client_options wide;
    wide.max_connections_per_origin = items;
    http::client c2(wide);
    t0 = steady::now();
    fanout_options fo;
    fo.limit = items;
    auto got = co_await gather(
        std::views::iota(0, items), [&](int i) { return c2.get(url(i)); }, fo);
    concurrent = seconds_since(t0);
    for (auto& r : got) ok_conc += r.ok();
  };
  loop.run(main());
  const double limit = delay_ms / 1000.0;
  std::printf("   sequential, one at a time:   %7.3f s  (%zu ok)\n", sequential, ok_seq);
  std::printf("   concurrent, gather:          %7.3f s  (%zu ok) = %.1fx one delay, %.0fx faster\n",
              concurrent, ok_conc, concurrent / limit, sequential / concurrent);
  int bad = 0;
  bad += check(ok_seq == items && ok_conc == items, "every item answered in both runs");
  bad += check(sequential >= items * limit, "sequential costs the sum of the delays");
  bad += check(concurrent < sequential / 10, "concurrent costs about one delay, not the sum");
  return bad;
}

// ---- 2. failures: gather fail-fast vs gather_settled + retries -------------------

int scene_failures(mock_api& api) {
  constexpr int items = 200;
  const std::string base = api.base_url();
  // Items 10, 30, ... fail with 500; 55 and 155 hang; 28 are flaky (one 503 first).
  // Each run asks for other ids (run * 1000 + i), so both runs meet the flaky ones fresh.
  auto url = [&](int run, int i) {
    std::string u =
        base + "/items/" + std::to_string(run * 1000 + i) + "?delay_ms=" + std::to_string(5 + i % 20);
    if (i % 20 == 10) u += "&fail=500";
    if (i == 55 || i == 155) u += "&hang=1";
    if (i % 7 == 3 && i % 20 != 10 && i != 55 && i != 155) u += "&flaky=1";
    return u;
  };
  std::printf("   200 items: 10 answer 500, 2 hang, 27 fail once with 503 then work.\n");
  event_loop loop({.name = "demo"});
  std::size_t done_before_raise = 0;
  std::string raised;
  double fail_fast_s = 0, settled_s = 0;
  std::map<std::string, int> kinds;
  int ok = 0;
  auto main = [&]() -> task<void> {
    http::client_options wide;
    wide.max_connections_per_origin = items;
    http::client c(wide);
    http::request_options strict;
    strict.throw_on_status = true;
    strict.timeout = 1s;
    auto t0 = steady::now();
    fanout_options fo;
    fo.limit = items;
    std::exception_ptr failure;
    try {
      auto one = [&](int i) -> task<http::response> {
        http::response r = co_await c.send("GET", url(1, i), {}, {}, strict);
        ++done_before_raise;
        co_return r;
      };
      (void)co_await gather(std::views::iota(0, items), one, fo);
    } catch (const std::exception& e) {
      raised = e.what();
    }
    fail_fast_s = seconds_since(t0);
    // gather_settled: every outcome kept; 1 s per attempt; HTTP retry policy.
    t0 = steady::now();
    fanout_options settled;
    settled.limit = items;
    settled.per_item_timeout = 1s;
    settled.retry = http::http_retry_policy("GET", 3, 20ms);
    auto results = co_await gather_settled(
        std::views::iota(0, items), [&](int i) { return c.send("GET", url(2, i), {}, {}, strict); }, settled);
    settled_s = seconds_since(t0);
    for (auto& r : results) {
      if (r.ok()) {
        ++ok;
      } else {
        ++kinds[r.error_kind()];
      }
    }
  };
  loop.run(main());
  std::printf("   gather (fail-fast):       raised after %.3f s: \"%s\"\n", fail_fast_s, raised.c_str());
  std::printf(
      "                             %zu good responses had arrived, the other %zu requests were cancelled:\n"
      "                             the caller gets none of them\n",
      done_before_raise, items - 1 - done_before_raise);
  std::string k;
  for (auto& [kind, n] : kinds) k += " " + kind + "=" + std::to_string(n);
  std::printf("   gather_settled + retries: %.3f s: %d ok, failures typed:%s\n", settled_s, ok, k.c_str());
  int bad = 0;
  bad += check(!raised.empty(), "fail-fast gather raised on the first failure");
  bad += check(ok == items - 12, "every good item kept, the flaky ones recovered by a retry");
  bad += check(kinds["http_status"] == 10 && kinds["timeout"] == 2,
               "10 http_status and 2 timeout errors, typed");
  return bad;
}

// ---- 3. a blocking call inside a coroutine ----------------------------------------

int scene_blocking(mock_api&) {
  std::printf(
      "   A 300 ms blocking call (think: a synchronous database driver) while a\n"
      "   heartbeat task should tick every 10 ms.\n");
  std::mutex m;
  std::vector<std::string> reports;
  event_loop::options lo;
  lo.name = "demo";
  lo.watchdog.on_stall = [&](const stall_report& r) {
    if (r.state == stall_report::phase::ended) {
      std::lock_guard lock(m);
      reports.push_back(r.to_string());
    }
  };
  event_loop loop(lo);
  thread_pool legacy({.name = "legacy-db", .threads = 2, .attach_to = &loop});
  double worst_inline = 0, worst_pool = 0;
  auto heartbeat = [](double& worst, bool& stop) -> task<void> {
    auto last = steady::now();
    while (!stop) {
      co_await sleep_for(10ms);
      worst = std::max(worst, seconds_since(last) * 1000);
      last = steady::now();
    }
  };
  auto blocking_query = [] {
    std::this_thread::sleep_for(300ms);  // the blocking call
    return 42;
  };
  auto main = [&]() -> task<void> {
    bool stop = false;
    auto hb = event_loop::current()->spawn(heartbeat(worst_inline, stop), "heartbeat");
    co_await sleep_for(30ms);
    auto inline_call = [&]() -> task<int> { co_return blocking_query(); };
    (void)co_await event_loop::current()->spawn(inline_call(), "report-query (blocking inline)");
    co_await sleep_for(30ms);
    stop = true;
    co_await hb;
    stop = false;
    auto hb2 = event_loop::current()->spawn(heartbeat(worst_pool, stop), "heartbeat");
    co_await sleep_for(30ms);
    (void)co_await run_blocking(legacy, job_name{"report-query"}, blocking_query);
    co_await sleep_for(30ms);
    stop = true;
    co_await hb2;
  };
  loop.run(main());
  std::printf("   inline:   the heartbeat's longest gap was %.0f ms; the watchdog said:\n", worst_inline);
  {
    std::lock_guard lock(m);
    for (auto& r : reports) std::printf("     %s\n", r.substr(0, r.find(" (", r.find("spawned="))).c_str());
  }
  std::printf("   on the 'legacy-db' pool (run_blocking): longest gap %.0f ms\n", worst_pool);
  int bad = 0;
  std::lock_guard lock(m);
  bool named = false;
  for (auto& r : reports) named = named || r.find("report-query (blocking inline)") != std::string::npos;
  bad += check(worst_inline >= 250, "the blocking call froze the loop");
  bad += check(named, "the watchdog named the culprit task");
  bad += check(worst_pool < 150, "moved to a named pool, the loop kept ticking");
  return bad;
}

// ---- 4. one shared pool starved vs isolated pools ------------------------------------

int scene_pools(mock_api&) {
  std::printf("   4 slow calls (1 s each: a big export) and one quick lookup (5 ms).\n");
  event_loop loop({.name = "demo"});
  double shared_wait = 0, isolated_wait = 0;
  auto slow = [] { std::this_thread::sleep_for(1s); };
  auto quick = [] { std::this_thread::sleep_for(5ms); };
  auto timed_quick = [&](thread_pool& p, double& out) -> task<void> {
    auto t0 = steady::now();
    co_await run_blocking(p, job_name{"lookup"}, quick);
    out = seconds_since(t0) * 1000;
  };
  auto main = [&]() -> task<void> {
    {
      thread_pool shared({.name = "default (shared)", .threads = 4, .attach_to = event_loop::current()});
      std::vector<join_handle<void>> exports;
      auto one = [&]() -> task<void> { co_await run_blocking(shared, job_name{"export"}, slow); };
      for (int i = 0; i < 4; ++i) exports.push_back(event_loop::current()->spawn(one(), "export"));
      co_await sleep_for(10ms);
      co_await timed_quick(shared, shared_wait);
      for (auto& h : exports) co_await h;
    }
    {
      thread_pool exports_pool({.name = "exports", .threads = 4, .attach_to = event_loop::current()});
      thread_pool lookups({.name = "lookups", .threads = 2, .attach_to = event_loop::current()});
      std::vector<join_handle<void>> exports;
      auto one = [&]() -> task<void> { co_await run_blocking(exports_pool, job_name{"export"}, slow); };
      for (int i = 0; i < 4; ++i) exports.push_back(event_loop::current()->spawn(one(), "export"));
      co_await sleep_for(10ms);
      co_await timed_quick(lookups, isolated_wait);
      for (auto& h : exports) co_await h;
    }
  };
  loop.run(main());
  std::printf("   one shared pool of 4:       the lookup took %6.0f ms (queued behind the exports)\n",
              shared_wait);
  std::printf("   isolated pools (named):     the lookup took %6.0f ms\n", isolated_wait);
  int bad = 0;
  bad += check(shared_wait >= 900, "a shared pool lets slow calls starve unrelated work");
  bad += check(isolated_wait < 300, "a pool of its own keeps the lookup fast");
  return bad;
}

// ---- 5. threads calling into one loop through the portal ------------------------------

int scene_portal(mock_api& api) {
  constexpr int threads = 8, calls = 50;
  std::printf(
      "   %d plain threads (a threaded web server's workers) x %d calls, each fanning\n"
      "   out 4 requests through one background loop.\n",
      threads, calls);
  background_loop bg;
  portal p = bg.portal();
  const std::string base = api.base_url();
  std::atomic<int> ok{0}, errors{0};
  std::mutex m;
  std::string first_error;
  // The client lives on the loop (made there, used there).
  std::shared_ptr<http::client> client = p.call_sync([] {
    http::client_options co;
    co.max_connections_per_origin = 64;
    return std::make_shared<http::client>(co);
  });
  auto t0 = steady::now();
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (int i = 0; i < calls; ++i) {
        try {
          auto fan_out = [client, base, t, i]() -> task<int> {
            fanout_options fo;
            fo.limit = 4;
            auto got = co_await gather_settled(
                std::views::iota(0, 4),
                [&](int k) {
                  return client->get(base + "/items/" + std::to_string(t * 1000 + i * 4 + k) + "?delay_ms=5");
                },
                fo);
            int n = 0;
            for (auto& r : got) n += r.ok() && r.value().ok();
            co_return n;
          };
          if (p.call(fan_out, 5s) == 4) {
            ++ok;
          } else {
            ++errors;
          }
        } catch (const std::exception& e) {
          ++errors;
          std::lock_guard lock(m);
          if (first_error.empty()) first_error = e.what();
        }
      }
    });
  }
  for (auto& w : workers) w.join();
  const double took = seconds_since(t0);
  // Misuse is an immediate, typed error, not a hang or a "loop already running".
  std::string misuse;
  try {
    (void)p.call_sync([&] { return p.call_sync([] { return 1; }); });
  } catch (const wrong_thread_error& e) {
    misuse = e.what();
  }
  p.call_sync([&] { client.reset(); });
  bg.stop();
  std::printf("   %d calls in %.3f s: %d ok, %d errors%s%s\n", threads * calls, took, ok.load(),
              errors.load(), first_error.empty() ? "" : "; first: ", first_error.c_str());
  std::printf("   a blocking portal call from the loop's own thread fails at once:\n     %s\n",
              misuse.c_str());
  int bad = 0;
  bad += check(ok == threads * calls && errors == 0, "zero errors from 8 threads sharing one loop");
  bad += check(!misuse.empty(), "misuse is a typed error, not a deadlock");
  return bad;
}

// Titles begin with the trap's number and name in README.md's trap table
// ("The asyncio traps and what closes them"); a test holds the two together.
const scene scenes[] = {
    {"sequential", "Trap 1, sequential fetching: 200 API items, one at a time vs concurrent",
     scene_sequential},
    {"failures",
     "Trap 2, gather throws away good results: items fail or hang; gather fail-fast vs gather_settled + "
     "retries",
     scene_failures},
    {"blocking",
     "Trap 3, a blocking call freezes the loop: the stall watchdog names it, a named pool moves it off",
     scene_blocking},
    {"pools", "Trap 4, one hidden shared pool: starved by slow calls vs isolated pools", scene_pools},
    {"portal", "Trap 5, one loop, many threads: plain threads calling into a background loop (the portal)",
     scene_portal},
};

}  // namespace

std::string demo_description() {
  return "Each asyncio trap, shown and solved, against an embedded mock API on 127.0.0.1";
}

std::string demo_scene_names() {
  std::string s;
  for (const auto& sc : scenes) s += (s.empty() ? "" : ", ") + std::string(sc.name);
  return s;
}

std::string demo_scene_list() {
  std::string s;
  for (const auto& sc : scenes) {
    std::string name = sc.name;
    name.resize(std::max<std::size_t>(name.size(), 11), ' ');
    s += "  " + name + " " + sc.title + "\n";
  }
  return s;
}

int run_demo(const std::vector<std::string>& names) {
  std::vector<const scene*> chosen;
  for (const auto& n : names) {
    const scene* found = nullptr;
    for (const auto& sc : scenes) {
      if (n == sc.name) found = &sc;
    }
    if (found == nullptr) {
      std::fprintf(stderr, "spindle demo: unknown scene '%s' (scenes: %s)\n", n.c_str(),
                   demo_scene_names().c_str());
      return 2;
    }
    chosen.push_back(found);
  }
  if (chosen.empty()) {
    for (const auto& sc : scenes) chosen.push_back(&sc);
  }
  mock_api api;
  std::printf("spindle demo: mock API on %s\n", api.base_url().c_str());
  const auto t0 = steady::now();
  int bad = 0;
  for (const scene* sc : chosen) {
    std::printf("\n== %s [%s]\n", sc->title, sc->name);
    const auto s0 = steady::now();
    bad += sc->run(api);
    std::printf("   (%.1f s)\n", seconds_since(s0));
    std::fflush(stdout);
  }
  std::printf("\n%s in %.1f s; %llu requests served by the mock API.\n",
              bad == 0 ? "Every scene showed what it claims" : "SOME SCENES DID NOT SHOW WHAT THEY CLAIM",
              seconds_since(t0), static_cast<unsigned long long>(api.requests()));
  return bad == 0 ? 0 : 1;
}

}  // namespace spindle::cli
