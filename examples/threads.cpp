// threads: trap 3 and its fix (docs/threads.md).
//
// A thread-per-request server: 8 plain std::threads ("workers") each serve
// 20 requests, and every request needs 12 independent sub-queries. The
// workers share ONE background_loop and enter it only through its portal:
// each request is one portal.call(fan_out(...), timeout). No worker runs a
// loop, so there is no "loop already running" and no wrong-thread error.
//
// Also shown: misuse from the loop's own thread raises instead of
// deadlocking; one sub-query that blocks the loop by mistake is named by the
// stall watchdog while it happens; stop() answers what is pending and
// reports; the statistics as Prometheus text.

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ranges>
#include <string>
#include <thread>
#include <vector>

#include "spindle/spindle.hpp"

using namespace std::chrono_literals;
using spindle::task;

namespace {

constexpr int workers = 8;
constexpr int requests_per_worker = 20;
constexpr int subqueries = 12;

// A sub-query: 5-20 ms of "network" (a timer on the loop, not a thread).
task<int> subquery(int request, int i) {
  co_await spindle::sleep_for(std::chrono::milliseconds(5 + (request * 7 + i * 3) % 16));
  co_return request * 100 + i;
}

// One request's fan-out, run on the loop: every sub-query ends in an outcome.
task<int> fan_out(int request) {
  auto results = co_await spindle::gather_settled(std::views::iota(0, subqueries),
                                                  [request](int i) { return subquery(request, i); },
                                                  {.per_item_timeout = 500ms});
  int ok = 0;
  for (const auto& r : results) ok += r.ok() ? 1 : 0;
  co_return ok;
}

}  // namespace

int main() {
  std::atomic<int> stalls_reported{0};
  spindle::background_loop bg(
      {.loop = {.name = "fanout",
                .watchdog = {.threshold = 100ms, .on_stall = [&](const spindle::stall_report& r) {
                               std::printf("watchdog: %s\n", r.to_string().c_str());
                               ++stalls_reported;
                             }}}});
  spindle::portal portal = bg.portal();

  // The workers: plain threads, synchronous code, one shared loop.
  std::atomic<int> answered{0}, complete{0}, errors{0};
  std::atomic<long long> total_us{0};
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  for (int w = 0; w < workers; ++w) {
    pool.emplace_back([&, w] {
      for (int r = 0; r < requests_per_worker; ++r) {
        const int request = w * requests_per_worker + r;
        auto start = std::chrono::steady_clock::now();
        try {
          int ok = portal.call([request] { return fan_out(request); }, 2s, "request");
          ++answered;
          if (ok == subqueries) ++complete;
        } catch (const spindle::error& e) {
          ++errors;
          std::printf("request %d: %s: %s\n", request, e.kind(), e.what());
        }
        total_us +=
            std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start)
                .count();
      }
    });
  }
  for (auto& t : pool) t.join();
  const double wall_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const int total = workers * requests_per_worker;
  std::printf("%d workers x %d requests x %d sub-queries: %d answered (%d complete), %d errors\n", workers,
              requests_per_worker, subqueries, answered.load(), complete.load(), errors.load());
  std::printf("mean request latency %.1f ms (sequential would be about %d x 12.5 = %.0f ms); wall %.0f ms\n",
              static_cast<double>(total_us.load()) / total / 1000.0, subqueries, subqueries * 12.5, wall_ms);

  // Misuse from the loop's own thread is an error, not a deadlock.
  bool refused = portal.call([portal]() -> task<bool> {
    try {
      (void)portal.call_sync([] { return 1; });
    } catch (const spindle::wrong_thread_error& e) {
      std::printf("on the loop thread: %s\n", e.what());
      co_return true;
    }
    co_return false;
  });

  // A mistake: a blocking sleep inside a task holds the loop. The watchdog
  // names it while it happens and again when it ends.
  portal.call(
      []() -> task<void> {
        std::this_thread::sleep_for(250ms);
        co_return;
      },
      5s, "blocking-mistake");

  spindle::prometheus_exposition metrics;
  metrics.add(bg.statistics());
  metrics.add(portal.statistics(), portal.loop_name());
  const std::string text = metrics.str();
  std::printf("metrics: %zu bytes of Prometheus text, e.g.\n", text.size());
  for (const char* family : {"spindle_portal_calls_total{", "spindle_loop_stalls_total{"}) {
    auto at = text.find(family);
    if (at != std::string::npos) std::printf("  %s\n", text.substr(at, text.find('\n', at) - at).c_str());
  }

  spindle::loop_shutdown_report report = bg.stop();
  std::printf("stop: %s\n", report.to_string().c_str());
  const bool good = answered == total && complete == total && errors == 0 && refused && stalls_reported == 2;
  return good ? 0 : 1;
}
