#include "spindle/watchdog.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "spindle/background_loop.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/sleep.hpp"

namespace spindle {
namespace {

using namespace std::chrono_literals;

class report_log {
 public:
  stall_handler handler() {
    return [this](const stall_report& r) {
      std::lock_guard lock(m_);
      reports_.push_back(r);
    };
  }
  std::vector<stall_report> reports() const {
    std::lock_guard lock(m_);
    return reports_;
  }
  std::size_t size() const { return reports().size(); }

 private:
  mutable std::mutex m_;
  std::vector<stall_report> reports_;
};

// Deterministic: a manual monitor on a manual clock, ticked by the test
// while a task really blocks the loop's thread.
TEST(Watchdog, NamesTheTaskHoldingTheLoopWhileItHappensAndWhenItEnds) {
  manual_clock clock;
  stall_monitor monitor(clock);
  report_log log;
  background_loop bg(
      {.loop = {.name = "wd-loop",
                .watchdog = {.threshold = 100ms, .on_stall = log.handler(), .monitor = &monitor}}});
  std::promise<void> entered, release;
  std::shared_future<void> released = release.get_future().share();
  const int spawn_line = __LINE__ + 1;
  auto f = bg.portal().submit(
      [&entered, released]() -> task<int> {
        entered.set_value();
        released.wait();  // blocks the loop thread: the bug the watchdog exists for
        co_return 1;
      },
      "blocking-handler");
  entered.get_future().wait();
  monitor.tick();  // t=0: first sight of the step
  clock.advance(50ms);
  monitor.tick();
  EXPECT_EQ(log.size(), 0u);  // 50 ms: below the threshold
  clock.advance(60ms);
  monitor.tick();  // 110 ms: a stall, reported while it happens
  ASSERT_EQ(log.size(), 1u);
  stall_report ongoing = log.reports()[0];
  EXPECT_EQ(ongoing.state, stall_report::phase::ongoing);
  EXPECT_EQ(ongoing.loop, "wd-loop");
  EXPECT_EQ(ongoing.held, 110ms);
  EXPECT_NE(ongoing.task_id, 0u);
  EXPECT_EQ(ongoing.where.line(), static_cast<unsigned>(spawn_line));
  EXPECT_NE(std::string(ongoing.where.file_name()).find("watchdog_test.cpp"), std::string::npos);
  clock.advance(50ms);
  monitor.tick();
  EXPECT_EQ(log.size(), 1u);  // once per stall
  clock.advance(140ms);       // 300 ms in all
  release.set_value();
  EXPECT_EQ(f.get(), 1);
  // The answer is sent from inside the step; statistics() runs on the loop
  // after it, when the loop has reported the end.
  loop_statistics s = bg.statistics();
  EXPECT_EQ(s.stalls, 1u);
  EXPECT_EQ(s.longest_stall, 300ms);
  auto reports = log.reports();
  ASSERT_EQ(reports.size(), 2u);
  const stall_report& ended = reports[1];
  EXPECT_EQ(ended.state, stall_report::phase::ended);
  EXPECT_EQ(ended.task, "blocking-handler");
  EXPECT_EQ(ended.task_id, ongoing.task_id);
  EXPECT_EQ(ended.held, 300ms);
  const std::string line = ended.to_string();
  EXPECT_NE(line.find("spindle: stall loop=wd-loop state=ended held_ms=300 task=blocking-handler "
                      "spawned=watchdog_test.cpp:"),
            std::string::npos)
      << line;
  monitor.tick();
  EXPECT_EQ(log.size(), 2u);  // the loop reported the end; the monitor does not repeat it
  bg.stop();
}

// Many short steps never look like a stall, however much time passes in
// total: the monitor ticks (from inside the steps) with 60 ms of clock
// between ticks, and every tick sees a new step.
TEST(Watchdog, ManyShortStepsNeverFire) {
  manual_clock clock;
  stall_monitor monitor(clock);
  report_log log;
  event_loop loop(
      {.name = "busy", .watchdog = {.threshold = 100ms, .on_stall = log.handler(), .monitor = &monitor}});
  auto busy = [&]() -> task<int> {
    int steps = 0;
    for (int i = 0; i < 10'000; ++i) {
      clock.advance(60ms);
      monitor.tick();
      co_await yield();  // a new step
      ++steps;
    }
    co_return steps;
  };
  EXPECT_EQ(loop.run(busy()), 10'000);
  EXPECT_EQ(log.size(), 0u);
  EXPECT_EQ(loop.statistics().stalls, 0u);
  EXPECT_GE(loop.statistics().steps, 10'000u);
}

// The same loop and monitor: one step that spans two ticks 150 ms apart is a
// stall, so the test above is not passing for want of detection.
TEST(Watchdog, OneLongStepAmongShortOnesFires) {
  manual_clock clock;
  stall_monitor monitor(clock);
  report_log log;
  event_loop loop(
      {.name = "busy", .watchdog = {.threshold = 100ms, .on_stall = log.handler(), .monitor = &monitor}});
  auto work = [&]() -> task<void> {
    for (int i = 0; i < 100; ++i) {
      clock.advance(60ms);
      monitor.tick();
      if (i == 50) {  // inside one step: two ticks, 150 ms apart
        clock.advance(150ms);
        monitor.tick();
      }
      co_await yield();
    }
  };
  auto main = [&]() -> task<void> { co_await loop.spawn(work(), "mostly-short"); };
  loop.run(main());
  auto reports = log.reports();
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_EQ(reports[0].state, stall_report::phase::ongoing);
  EXPECT_EQ(reports[0].held, 150ms);
  EXPECT_EQ(reports[1].state, stall_report::phase::ended);
  EXPECT_EQ(reports[1].task, "mostly-short");
  EXPECT_EQ(loop.statistics().stalls, 1u);
}

TEST(Watchdog, IdleLoopIsNotAStall) {
  manual_clock clock;
  stall_monitor monitor(clock);
  report_log log;
  background_loop bg(
      {.loop = {.name = "idle",
                .watchdog = {.threshold = 100ms, .on_stall = log.handler(), .monitor = &monitor}}});
  EXPECT_EQ(bg.portal().call([]() -> task<int> { co_return 1; }), 1);
  // The loop now waits in epoll: ticks 1 s apart see it idle.
  for (int i = 0; i < 5; ++i) {
    std::this_thread::sleep_for(1ms);
    monitor.tick();
    clock.advance(1s);
  }
  monitor.tick();
  EXPECT_EQ(log.size(), 0u);
  bg.stop();
}

TEST(Watchdog, NoThresholdTurnsItOff) {
  manual_clock clock;
  stall_monitor monitor(clock);
  report_log log;
  event_loop loop({.name = "off",
                   .watchdog = {.threshold = std::nullopt, .on_stall = log.handler(), .monitor = &monitor}});
  auto step = [&]() -> task<void> {
    monitor.tick();
    clock.advance(10s);
    monitor.tick();
    co_return;
  };
  loop.run(step());
  EXPECT_EQ(log.size(), 0u);
}

// The real thing: the shared monitor thread and a task that blocks its loop
// with a 300 ms sleep.
TEST(Watchdog, SharedMonitorCatchesA300msBlockingSleep) {
  report_log log;
  event_loop loop({.name = "real", .watchdog = {.threshold = 100ms, .on_stall = log.handler()}});
  auto main = [&]() -> task<void> {
    co_await loop.spawn(
        []() -> task<void> {
          std::this_thread::sleep_for(300ms);  // the mistake
          co_return;
        }(),
        "sleepy-handler");
  };
  loop.run(main());
  auto reports = log.reports();
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_EQ(reports[0].state, stall_report::phase::ongoing);
  EXPECT_GE(reports[0].held, 100ms);
  EXPECT_EQ(reports[1].state, stall_report::phase::ended);
  EXPECT_EQ(reports[1].task, "sleepy-handler");
  EXPECT_GE(reports[1].held, reports[0].held);
  EXPECT_EQ(loop.statistics().stalls, 1u);
}

// The step hook (issue #17 point 7): the core knows only step_observer; the
// watchdog is the default observer the diag layer installs.
TEST(StepHook, TheWatchdogIsEveryLoopsDefaultObserver) {
  EXPECT_NE(detail::default_step_observer(), nullptr);
}

class recording_observer final : public step_observer {
 public:
  void attach(step_slot& slot, std::string_view loop_name) override {
    slot_ = &slot;
    loop_name_ = std::string(loop_name);
    ++attached_;
  }
  void detach(step_slot& slot) noexcept override {
    EXPECT_EQ(&slot, slot_);
    last_seq_ = slot.seq.load(std::memory_order_acquire);
    ++detached_;
  }
  std::optional<duration> on_flagged_step_end(step_slot& slot, flagged_step step) noexcept override {
    EXPECT_EQ(&slot, slot_);
    ended_.push_back(std::move(step));
    return 5ms;
  }
  // Flags the step running now (called from inside it).
  void flag_current() { slot_->flagged_seq.store(slot_->seq.load(std::memory_order_relaxed)); }
  [[nodiscard]] const step_slot& slot() const { return *slot_; }

  step_slot* slot_ = nullptr;
  std::string loop_name_;
  int attached_ = 0;
  int detached_ = 0;
  std::uint64_t last_seq_ = 0;
  std::vector<flagged_step> ended_;
};

TEST(StepHook, AnObserverOfItsOwnSeesStepsAndFlaggedEnds) {
  auto obs = std::make_shared<recording_observer>();
  event_loop loop({.name = "hooked", .watchdog = {.threshold = std::nullopt, .observer = obs}});
  std::uint64_t inside_task_id = 0;
  auto child = [&]() -> task<void> {
    inside_task_id = obs->slot().task_id.load();
    EXPECT_EQ(obs->slot().seq.load() & step_slot::idle_bit, 0u);  // busy while a step runs
    obs->flag_current();
    co_return;
  };
  auto main = [&]() -> task<void> {
    auto h = loop.spawn(child(), "flagged-child");
    co_await h;
  };
  loop.run(main());
  EXPECT_EQ(obs->loop_name_, "hooked");
  EXPECT_EQ(obs->attached_, 1);
  EXPECT_EQ(obs->detached_, 1);
  EXPECT_NE(inside_task_id, 0u);
  EXPECT_EQ(obs->last_seq_ & step_slot::idle_bit, step_slot::idle_bit);  // idle after the run
  ASSERT_EQ(obs->ended_.size(), 1u);
  EXPECT_EQ(obs->ended_[0].task_id, inside_task_id);
  EXPECT_EQ(obs->ended_[0].task_name, "flagged-child");  // it ended inside its flagged step
  EXPECT_NE(std::string(obs->ended_[0].where.file_name()).find("watchdog_test.cpp"), std::string::npos);
  EXPECT_EQ(loop.statistics().stalls, 1u);
  EXPECT_EQ(loop.statistics().longest_stall, 5ms);
}

TEST(Watchdog, DefaultSinkIsOneGreppableLine) {
  stall_report r;
  r.state = stall_report::phase::ongoing;
  r.loop = "api";
  r.task_id = 17;
  r.held = 112ms;
  EXPECT_EQ(r.to_string(), "spindle: stall loop=api state=ongoing held_ms=112 task=#17");
  r.task_id = 0;
  EXPECT_EQ(r.to_string(), "spindle: stall loop=api state=ongoing held_ms=112 task=(callback)");
}

}  // namespace
}  // namespace spindle

namespace spindle {
namespace {

template <class T>
std::string where_am_i(T) {
  return std::source_location::current().function_name();
}

// Issue #16: a stall line named its task's spawn site with the compiler's
// whole pretty name (~2,000 characters of template arguments for a fan-out
// worker). The readable form keeps the qualified name only.
TEST(Diagnostics, ReadableFunctionNamesDropTypesAndTemplates) {
  EXPECT_EQ(
      readable_function_name("spindle::task<void> spindle::detail::channel_driver(std::shared_ptr<_Tp>) "
                             "[with T = int; S = spindle::detail::channel_stream_state<int, F, int>]"),
      "spindle::detail::channel_driver");
  EXPECT_EQ(readable_function_name("spindle::task<void> spindle::cli::{anonymous}::run_state::fetch_one("
                                   "spindle::cli::{anonymous}::input_item&)"),
            "spindle::cli::{anonymous}::run_state::fetch_one");
  EXPECT_EQ(readable_function_name("std::string spindle::(anonymous namespace)::where_am_i(T) [T = "
                                   "std::vector<std::pair<int, std::basic_string<char>>>]"),
            "spindle::{anonymous}::where_am_i");  // clang's spelling
  EXPECT_EQ(readable_function_name("int main()"), "main");
  EXPECT_EQ(readable_function_name("main()::<lambda()>"), "main::lambda");
  EXPECT_EQ(readable_function_name("auto (anonymous namespace)::f(int)"), "{anonymous}::f");
  EXPECT_EQ(readable_function_name("bool ns::operator<(const A&, const A&)"), "ns::operator<");
  EXPECT_EQ(readable_function_name("void ns::C::g() const"), "ns::C::g");
  // What this compiler writes for a function template.
  const std::string pretty = where_am_i(std::vector<std::pair<int, std::string>>{});
  EXPECT_EQ(readable_function_name(pretty), "spindle::{anonymous}::where_am_i") << pretty;
}

}  // namespace
}  // namespace spindle
