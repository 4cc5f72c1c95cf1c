#include <spindle/spindle.hpp>

#include <chrono>
#include <cstdio>

// The core, exec, bridge and diag layers: a task, a thread pool and a
// background loop, linked with nothing but Threads.
spindle::task<int> twice(spindle::thread_pool& pool, int x) {
  co_await spindle::yield();
  const int y = co_await spindle::run_blocking(pool, [x] { return 2 * x; });
  co_return y;
}

int main() {
  spindle::thread_pool pool({.name = "consumer", .threads = 1});
  spindle::event_loop loop;
  const int v = loop.run(twice(pool, 21));
  spindle::background_loop bg;
  const int w = bg.portal().call([]() -> spindle::task<int> { co_return 1; }, std::chrono::seconds(5));
  std::printf("core consumer: %d\n", v + w);
  return v + w == 43 ? 0 : 1;
}
