// timeouts: deadlines and cancellation scopes (docs/cancellation.md).
//
// A slow call bounded by with_timeout; an optional extra bounded by
// move_on_after; cleanup that must finish even when its task is cancelled,
// under shielded(); a scope's deadline seen from inside with current_deadline().

#include <chrono>
#include <cstdio>
#include <string>

#include "spindle/spindle.hpp"

using namespace std::chrono_literals;
using spindle::task;

namespace {

task<std::string> slow_lookup(spindle::duration d) {
  co_await spindle::sleep_for(d);
  co_return "answer";
}

task<void> close_connection(bool& closed) {
  co_await spindle::sleep_for(20ms);  // a goodbye message, say
  closed = true;
}

task<void> worker(bool& closed) {
  bool cancelled = false;
  try {
    co_await spindle::sleep_for(1h);
  } catch (const spindle::cancelled_error&) {
    cancelled = true;
  }
  if (cancelled) {
    // Any await here would throw at once: the task is cancelled. Shield the
    // cleanup (and bound it: a shield also ignores outer deadlines).
    co_await spindle::shielded(spindle::with_timeout(1s, close_connection(closed)));
    throw spindle::cancelled_error();
  }
}

task<int> demo(spindle::event_loop& loop) {
  int failures = 0;

  try {
    co_await spindle::with_timeout(50ms, slow_lookup(10s));
    ++failures;
  } catch (const spindle::timeout_error& e) {
    std::printf("with_timeout:  %s (kind=%s)\n", e.what(), e.kind());
  }

  std::optional<std::string> extra = co_await spindle::move_on_after(30ms, slow_lookup(5ms));
  std::printf("move_on_after: %s\n", extra ? extra->c_str() : "(gave up)");
  if (!extra) ++failures;

  auto deadline_probe = []() -> task<spindle::duration> {
    co_return spindle::current_deadline() - spindle::event_loop::current()->now();
  };
  auto left = co_await spindle::with_timeout(2s, spindle::with_timeout(500ms, deadline_probe()));
  std::printf("current_deadline: innermost wins, %lld ms left\n",
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(left).count()));
  if (left > 500ms) ++failures;

  bool closed = false;
  auto h = loop.spawn(worker(closed), "worker");
  co_await spindle::sleep_for(10ms);
  h.cancel();
  try {
    co_await h;
  } catch (const spindle::cancelled_error&) {
  }
  std::printf("shielded cleanup in a cancelled task: %s\n", closed ? "completed" : "LOST");
  if (!closed) ++failures;
  co_return failures;
}

}  // namespace

int main() {
  spindle::event_loop loop({.name = "timeouts"});
  return loop.run(demo(loop)) == 0 ? 0 : 1;
}
