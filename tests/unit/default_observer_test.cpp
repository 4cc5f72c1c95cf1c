// The stall watchdog is every loop's default step observer in any program
// linked with spindle::spindle, including one that never names the diag
// layer: this binary references nothing of src/diag/watchdog.cpp, so it
// checks that the link pulls the watchdog's initializer in (a local link
// anchor once dropped it silently).

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "spindle/event_loop.hpp"
#include "spindle/step_hook.hpp"

namespace spindle {
namespace {

using namespace std::chrono_literals;

TEST(DefaultObserver, IsInstalledWithoutNamingTheDiagLayer) {
  EXPECT_NE(detail::default_step_observer(), nullptr);
}

TEST(DefaultObserver, ADefaultLoopCountsAStall) {
  event_loop loop({.name = "default-watch"});
  auto main = []() -> task<void> {
    std::this_thread::sleep_for(300ms);  // holds the loop past the 100 ms default
    co_return;
  };
  loop.run(main());
  EXPECT_EQ(loop.statistics().stalls, 1u);
}

}  // namespace
}  // namespace spindle
