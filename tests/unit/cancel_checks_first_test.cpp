// Issue #17 point 2: every cancellation point checks first. Once a task is
// cancelled, an await that would not suspend (a set event, a buffered
// channel value, room in a channel, a free permit, a finished child, data
// already on a socket) throws cancelled_error all the same, and takes
// nothing (the value, the room, the permit and the child's result stay).

#include <gtest/gtest.h>

#include <span>
#include <string>
#include <vector>

#include "spindle/cancel_scope.hpp"
#include "spindle/channel.hpp"
#include "spindle/event.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/join_handle.hpp"
#include "spindle/mutex.hpp"
#include "spindle/net/tcp.hpp"
#include "spindle/semaphore.hpp"
#include "spindle/sleep.hpp"

namespace spindle {
namespace {

using namespace std::chrono_literals;

task<int> finished_child() { co_return 11; }

TEST(CancelChecksFirst, ReadyPathsThrowOnceTheTaskIsCancelled) {
  event_loop loop;
  auto main = [&]() -> task<void> {
    event gate("gate");
    event already_set("already set");
    already_set.set();
    channel<int> buffered(4, "buffered");
    (void)buffered.try_send(1);
    channel<int> roomy(4, "roomy");
    semaphore sem(1, "sem");
    mutex mu;
    join_handle<int> child = event_loop::current()->spawn(finished_child(), "child");
    while (!child.done()) co_await yield();
    // A connected pair with bytes waiting on the accepting side.
    net::tcp_listener listener = net::tcp_listener::bind(net::socket_address::loopback_v4(0));
    net::tcp_stream client = co_await net::connect(listener.local_address());
    net::tcp_stream server = co_await listener.accept();
    const std::string hello = "hello";
    co_await client.write_all(std::as_bytes(std::span(hello.data(), hello.size())));
    co_await sleep_for(5ms);  // (the bytes reach the other side's queue)

    std::vector<std::string> threw;
    auto victim = [&]() -> task<void> {
      try {
        co_await gate.wait();  // cancelled here or just after: either way it is cancelled now
      } catch (const cancelled_error&) {
      }
      try {
        co_await already_set.wait();
      } catch (const cancelled_error&) {
        threw.push_back("event");
      }
      try {
        (void)co_await buffered.receive();
      } catch (const cancelled_error&) {
        threw.push_back("channel::receive");
      }
      try {
        co_await roomy.send(2);
      } catch (const cancelled_error&) {
        threw.push_back("channel::send");
      }
      try {
        co_await sem.acquire();
      } catch (const cancelled_error&) {
        threw.push_back("semaphore");
      }
      try {
        co_await mu.lock();
      } catch (const cancelled_error&) {
        threw.push_back("mutex");
      }
      try {
        (void)co_await child;
      } catch (const cancelled_error&) {
        threw.push_back("join");
      }
      try {
        std::byte buf[16];
        (void)co_await server.read_some(buf);
      } catch (const cancelled_error&) {
        threw.push_back("tcp read");
      }
      try {
        const std::string more = "more";
        co_await server.write_all(std::as_bytes(std::span(more.data(), more.size())));
      } catch (const cancelled_error&) {
        threw.push_back("tcp write");
      }
      try {
        co_await yield();
      } catch (const cancelled_error&) {
        threw.push_back("yield");
      }
      try {
        co_await sleep_for(0ms);
      } catch (const cancelled_error&) {
        threw.push_back("sleep_for(0)");
      }
    };
    join_handle<void> v = event_loop::current()->spawn(victim(), "victim");
    co_await yield();  // the victim parks on the gate
    gate.set();
    v.cancel();
    try {
      co_await v;
    } catch (const cancelled_error&) {
    }
    EXPECT_EQ(threw,
              (std::vector<std::string>{"event", "channel::receive", "channel::send", "semaphore", "mutex",
                                        "join", "tcp read", "tcp write", "yield", "sleep_for(0)"}));
    // Nothing was taken.
    EXPECT_EQ(buffered.try_receive(), std::optional<int>(1));
    EXPECT_EQ(roomy.try_receive(), std::nullopt);
    EXPECT_TRUE(sem.try_acquire());
    EXPECT_TRUE(mu.try_lock());
    const int result = co_await child;
    EXPECT_EQ(result, 11);
    std::byte buf[16];
    const std::size_t n = co_await server.read_some(buf);
    EXPECT_EQ(n, 5u);  // the bytes are still there
  };
  loop.run(main());
}

// A shielded cleanup inside a cancelled task still passes its awaits.
TEST(CancelChecksFirst, ShieldedCleanupStillRuns) {
  event_loop loop;
  auto main = [&]() -> task<void> {
    event gate("gate");
    event cleanup_done("cleanup");
    cleanup_done.set();
    bool cleaned = false;
    auto victim = [&]() -> task<void> {
      try {
        co_await gate.wait();
      } catch (const cancelled_error&) {
      }
      auto cleanup = shielded(cleanup_done.wait());
      co_await std::move(cleanup);
      cleaned = true;
    };
    join_handle<void> v = event_loop::current()->spawn(victim(), "victim");
    co_await yield();
    v.cancel();
    try {
      co_await v;
    } catch (const cancelled_error&) {
    }
    EXPECT_TRUE(cleaned);
  };
  loop.run(main());
}

}  // namespace
}  // namespace spindle
