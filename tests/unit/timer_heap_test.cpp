#include "spindle/detail/timer_heap.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <random>
#include <set>
#include <utility>
#include <vector>

namespace spindle::detail {
namespace {

time_point at(long long ns) { return time_point{duration{ns}}; }

TEST(TimerHeap, PopsInDeadlineThenInsertionOrder) {
  timer_heap h;
  std::vector<timer_entry> e(6);
  long long deadlines[] = {30, 10, 20, 10, 30, 10};
  for (std::size_t i = 0; i < e.size(); ++i) {
    e[i].deadline = at(deadlines[i]);
    h.push(&e[i]);
  }
  std::vector<timer_entry*> order;
  while (!h.empty()) order.push_back(h.pop());
  std::vector<timer_entry*> want = {&e[1], &e[3], &e[5], &e[2], &e[0], &e[4]};
  EXPECT_EQ(order, want);
  for (auto& x : e) EXPECT_FALSE(x.queued());
}

// Random pushes and erases against std::set as the reference.
TEST(TimerHeap, RandomisedAgainstReference) {
  std::mt19937_64 rng(12345);
  timer_heap h;
  std::vector<std::unique_ptr<timer_entry>> pool;
  std::set<std::pair<long long, std::uint64_t>> ref;
  std::vector<timer_entry*> live;
  for (int step = 0; step < 200'000; ++step) {
    int op = static_cast<int>(rng() % 3);
    if (op < 2 || live.empty()) {
      pool.push_back(std::make_unique<timer_entry>());
      timer_entry* t = pool.back().get();
      t->deadline = at(static_cast<long long>(rng() % 1000));
      h.push(t);
      ref.insert({t->deadline.time_since_epoch().count(), t->seq});
      live.push_back(t);
    } else if (op == 2 && rng() % 2 == 0) {
      std::size_t i = rng() % live.size();
      timer_entry* t = live[i];
      ref.erase({t->deadline.time_since_epoch().count(), t->seq});
      h.erase(t);
      EXPECT_FALSE(t->queued());
      live[i] = live.back();
      live.pop_back();
    } else {
      timer_entry* t = h.pop();
      ASSERT_NE(t, nullptr);
      auto first = *ref.begin();
      ASSERT_EQ(t->deadline.time_since_epoch().count(), first.first);
      ASSERT_EQ(t->seq, first.second);
      ref.erase(ref.begin());
      live.erase(std::find(live.begin(), live.end(), t));
    }
    ASSERT_EQ(h.size(), ref.size());
  }
}

TEST(TimerHeap, EraseOfUnqueuedIsNoop) {
  timer_heap h;
  timer_entry a;
  h.erase(&a);
  EXPECT_TRUE(h.empty());
}

}  // namespace
}  // namespace spindle::detail
