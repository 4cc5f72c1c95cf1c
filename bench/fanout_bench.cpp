// Fan-out and sync-primitive benchmarks (issue #3). Op names match
// bench/peers/asyncio_fanout.py for bench/compare.py.
//
//   BM_gather_settled_100k   gather_settled of 100,000 trivial tasks, limit 1,000 (ns per item)
//   BM_gather_100k           gather (fail-fast, the values) of the same
//   BM_semaphore             uncontended acquire + release (ns per pair)
//   BM_semaphore_handoff     two tasks passing one permit back and forth (ns per hand-off)
//   BM_channel               1,000,000 values through a channel of 1,024, producer and consumer tasks

#include <benchmark/benchmark.h>

#include <ranges>

#include "spindle/spindle.hpp"

namespace {

using spindle::task;

task<int> trivial(int i) { co_return i; }

void BM_gather_settled_100k(benchmark::State& state) {
  constexpr int n = 100'000;
  spindle::event_loop loop;
  auto body = [&]() -> task<void> {
    for (auto _ : state) {
      auto out = co_await spindle::gather_settled(std::views::iota(0, n), trivial, {.limit = 1000});
      benchmark::DoNotOptimize(out.data());
    }
  };
  loop.run(body());
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_gather_settled_100k)->Unit(benchmark::kMillisecond);

void BM_gather_100k(benchmark::State& state) {
  constexpr int n = 100'000;
  spindle::event_loop loop;
  auto body = [&]() -> task<void> {
    for (auto _ : state) {
      auto out = co_await spindle::gather(std::views::iota(0, n), trivial, {.limit = 1000});
      benchmark::DoNotOptimize(out.data());
    }
  };
  loop.run(body());
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_gather_100k)->Unit(benchmark::kMillisecond);

void BM_semaphore(benchmark::State& state) {
  spindle::event_loop loop;
  spindle::semaphore sem(10);
  auto body = [&]() -> task<void> {
    for (auto _ : state) {
      co_await sem.acquire();
      sem.release();
    }
  };
  loop.run(body());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_semaphore);

void BM_semaphore_handoff(benchmark::State& state) {
  constexpr int n = 100'000;
  spindle::event_loop loop;
  auto body = [&]() -> task<void> {
    for (auto _ : state) {
      spindle::semaphore sem(1);
      auto player = [&]() -> task<void> {
        for (int i = 0; i < n / 2; ++i) {
          co_await sem.acquire();
          co_await spindle::yield();  // hold it across a turn: the other must wait
          sem.release();
        }
      };
      co_await spindle::gather(player(), player());
    }
  };
  loop.run(body());
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_semaphore_handoff)->Unit(benchmark::kMillisecond);

void BM_channel(benchmark::State& state) {
  constexpr int n = 1'000'000;
  spindle::event_loop loop;
  auto body = [&]() -> task<void> {
    for (auto _ : state) {
      spindle::channel<int> ch(1024);
      auto producer = [&]() -> task<void> {
        for (int i = 0; i < n; ++i) co_await ch.send(i);
        ch.close();
      };
      auto consumer = [&]() -> task<void> {
        long sum = 0;
        while (auto v = co_await ch.receive()) sum += *v;
        benchmark::DoNotOptimize(sum);
      };
      co_await spindle::gather(producer(), consumer());
    }
  };
  loop.run(body());
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_channel)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
