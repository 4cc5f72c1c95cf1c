// fanout: the fan-out family (docs/cancellation.md).
//
// 200 "requests" where some fail, some hang and some are flaky:
// gather_settled with a window of 32, a per-item timeout and a retry policy
// keeps every good result and types every failure; gather (fail-fast)
// would have thrown them all away on the first error; as_completed hands
// results over as they finish; a task_group runs a fixed set of jobs.

#include <chrono>
#include <cstdio>
#include <map>
#include <ranges>
#include <stdexcept>
#include <string>

#include "spindle/spindle.hpp"

using namespace std::chrono_literals;
using spindle::task;

namespace {

int attempts[200] = {};

task<int> fake_request(int i) {
  ++attempts[i];
  co_await spindle::sleep_for(std::chrono::milliseconds(5 + (i * 7) % 20));
  if (i % 50 == 7) throw std::runtime_error("500 Internal Server Error");
  if (i % 50 == 13) co_await spindle::sleep_for(1h);  // hangs
  if (i % 25 == 3 && attempts[i] == 1) throw spindle::timeout_error("flaky: first attempt timed out");
  co_return i;
}

task<int> demo() {
  auto items = std::views::iota(0, 200);
  spindle::fanout_options opts{.limit = 32,
                               .per_item_timeout = 100ms,
                               .retry = spindle::retry_policy{.max_attempts = 3, .base_delay = 10ms}};

  // Fail-fast: the first error cancels the rest.
  try {
    co_await spindle::gather(items, fake_request, opts);
  } catch (const std::exception& e) {
    std::printf("gather (fail-fast): threw \"%s\" - the good results are gone\n", e.what());
  }

  // Settled: every input ends in exactly one outcome.
  auto outcomes = co_await spindle::gather_settled(items, fake_request, opts);
  std::map<std::string, int> by_kind;
  int ok = 0;
  for (auto& o : outcomes) o.ok() ? ++ok : ++by_kind[o.error_kind()];
  std::printf("gather_settled: %zu outcomes, %d ok", outcomes.size(), ok);
  for (auto& [kind, n] : by_kind) std::printf(", %d %s", n, kind.c_str());
  std::printf("\n");

  // As they finish.
  auto stream = spindle::as_completed(std::views::iota(0, 10), fake_request, {.limit = 4});
  std::printf("as_completed order:");
  while (auto done = co_await stream.next()) std::printf(" %zu", done->index);
  std::printf("\n");

  // A fixed set of jobs in a nursery.
  int sum = 0;
  co_await spindle::with_task_group([&](spindle::task_group& g) -> task<void> {
    for (int i = 0; i < 3; ++i)
      g.spawn([](int& s, int v) -> task<void> {
        co_await spindle::sleep_for(1ms);
        s += v;
      }(sum, i + 1));
    co_return;
  });
  std::printf("task_group: sum=%d\n", sum);
  co_return (outcomes.size() == 200 && ok == 192 && sum == 6) ? 0 : 1;
}

}  // namespace

int main() {
  spindle::event_loop loop({.name = "fanout"});
  return loop.run(demo());
}
