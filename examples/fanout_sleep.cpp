// fanout_sleep: the core of spindle in one screen.
//
// 200 simulated API calls of 50 ms each: awaited one after another they
// take 200 x 50 ms = 10 s; spawned on one loop they take about one delay.
// Then a foreign thread enters the loop through its one thread-safe door,
// and the same thread calling a non-thread-safe method gets a clear error.
//
// Until `spindle demo` exists this is what `make demo` runs.

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "spindle/spindle.hpp"

using namespace std::chrono_literals;
using spindle::task;

namespace {

// Stands in for an HTTP request: answers after `delay`.
task<int> fake_request(int id, spindle::duration delay) {
  co_await spindle::sleep_for(delay);
  co_return id * 2;
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

task<void> demo(spindle::event_loop& loop) {
  constexpr int items = 200;
  constexpr auto delay = 50ms;

  // 1. Sequential: a sample of 10 items, to keep the demo short.
  auto t0 = std::chrono::steady_clock::now();
  long sum = 0;
  for (int i = 0; i < 10; ++i) sum += co_await fake_request(i, delay);
  double seq_ms = ms_since(t0);
  std::printf("sequential: 10 items in %7.1f ms  -> 200 items would take ~%.1f s\n", seq_ms,
              seq_ms * items / 10 / 1000);

  // 2. Concurrent: spawn all 200, then await every handle.
  t0 = std::chrono::steady_clock::now();
  std::vector<spindle::join_handle<int>> handles;
  handles.reserve(items);
  for (int i = 0; i < items; ++i) handles.push_back(loop.spawn(fake_request(i, delay), "item"));
  sum = 0;
  for (auto& h : handles) sum += co_await h;
  double con_ms = ms_since(t0);
  std::printf("concurrent: %d items in %7.1f ms  (one delay is %lld ms; sum=%ld)\n", items, con_ms,
              static_cast<long long>(delay.count()), sum);

  // 3. A foreign thread: call_soon_threadsafe is the door; spawn is not.
  std::string error;
  int delivered = 0;
  std::thread worker([&] {
    pthread_setname_np(pthread_self(), "worker");
    for (int i = 0; i < 1000; ++i) loop.call_soon_threadsafe([&] { ++delivered; });
    try {
      loop.spawn(fake_request(0, 1ms)).detach();
    } catch (const spindle::wrong_thread_error& e) {
      error = e.what();
    }
  });
  worker.join();
  co_await spindle::yield();
  std::printf("foreign thread: %d/1000 callbacks delivered through call_soon_threadsafe\n", delivered);
  std::printf("foreign thread calling spawn(): wrong_thread_error:\n  %s\n", error.c_str());
}

}  // namespace

int main() {
  spindle::event_loop loop({.name = "demo"});
  loop.run(demo(loop));
  auto s = loop.statistics();
  std::printf("loop '%s': %llu tasks spawned, %llu completed, %llu steps, %llu polls\n", s.name.c_str(),
              static_cast<unsigned long long>(s.tasks_spawned),
              static_cast<unsigned long long>(s.tasks_completed), static_cast<unsigned long long>(s.steps),
              static_cast<unsigned long long>(s.polls));
  return 0;
}
