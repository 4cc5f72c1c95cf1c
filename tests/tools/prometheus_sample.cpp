// Prints a real exposition (two loops, a background loop's portal, two
// pools with traffic, a label value that needs escaping) for
// `promtool check metrics` (CTest: prometheus.promtool).
#include <cstdio>

#include "spindle/http/metrics.hpp"
#include "spindle/spindle.hpp"

int main() {
  using namespace std::chrono_literals;
  spindle::prometheus_exposition e;
  spindle::thread_pool files({.name = "files", .threads = 2});
  spindle::thread_pool odd({.name = "we\"ird\\pool\nname", .threads = 1});
  {
    spindle::event_loop loop({.name = "main"});
    auto work = [&]() -> spindle::task<int> {
      int n = 0;
      for (int i = 0; i < 20; ++i) n += co_await spindle::run_blocking(files, [i] { return i; });
      co_await spindle::run_blocking(odd, [] {});
      co_await spindle::sleep_for(1ms);
      co_return n;
    };
    if (loop.run(work()) != 190) return 1;
    e.add(loop.statistics());
  }
  spindle::background_loop bg({.loop = {.name = "background"}});
  auto p = bg.portal();
  (void)p.call([]() -> spindle::task<int> { co_return 1; }, 1s);
  e.add(bg.statistics());
  e.add(p.statistics(), p.loop_name());
  e.add(files.statistics());
  e.add(odd.statistics());
  spindle::http::client_statistics pool{
      .open = 3, .idle = 2, .in_use = 1, .created = 9, .reused = 40, .failed = 1, .requests = 48};
  spindle::http::add_metrics(e, pool, "backend");
  spindle::http::server_statistics front{.connections_accepted = 5,
                                         .connections_open = 2,
                                         .connections_evicted = 1,
                                         .fd_exhaustion = 1,
                                         .requests = 50,
                                         .heads_rejected = 2,
                                         .header_timeouts = 3};
  spindle::http::add_metrics(e, front, "front");
  std::fputs(e.str().c_str(), stdout);
  return 0;
}
