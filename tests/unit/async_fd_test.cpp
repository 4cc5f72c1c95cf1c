#include "spindle/async_fd.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "spindle/event_loop.hpp"
#include "spindle/sleep.hpp"
#include "support/test_support.hpp"

namespace spindle {
namespace {

using namespace std::chrono_literals;

struct pipe_pair {
  int r = -1, w = -1;
  pipe_pair() {
    int fds[2];
    EXPECT_EQ(::pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
    r = fds[0];
    w = fds[1];
  }
  ~pipe_pair() {
    if (r >= 0) ::close(r);
    if (w >= 0) ::close(w);
  }
};

// Reads until EAGAIN, waiting for readiness in between (the documented contract).
task<std::string> read_exactly(async_fd& fd, std::size_t n) {
  std::string out;
  char buf[64];
  while (out.size() < n) {
    ssize_t got = ::read(fd.fd(), buf, sizeof buf);
    if (got > 0) {
      out.append(buf, static_cast<std::size_t>(got));
    } else if (got == 0) {
      break;
    } else if (errno == EAGAIN) {
      co_await fd.wait_readable();
    } else {
      throw system_error("read", errno);
    }
  }
  co_return out;
}

TEST(AsyncFd, ReaderWakesWhenDataArrives) {
  event_loop loop;
  pipe_pair p;
  async_fd rfd(loop, p.r);
  auto writer = [&]() -> task<void> {
    for (const char* part : {"hel", "lo ", "world"}) {
      co_await yield();
      EXPECT_GT(::write(p.w, part, std::char_traits<char>::length(part)), 0);
    }
  };
  auto main = [&]() -> task<std::string> {
    auto w = loop.spawn(writer());
    std::string s = co_await read_exactly(rfd, 11);
    co_await w;
    co_return s;
  };
  EXPECT_EQ(loop.run(main()), "hello world");
  EXPECT_EQ(loop.statistics().io_registrations, 1u);
}

TEST(AsyncFd, WritableSocketCompletesAtOnce) {
  event_loop loop;
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  {
    async_fd a(loop, sv[0]);
    auto main = [&]() -> task<void> { co_await a.wait_writable(); };
    loop.run(main());
  }
  ::close(sv[0]);
  ::close(sv[1]);
}

TEST(AsyncFd, WriterWaitsUntilPeerDrains) {
  event_loop loop;
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  async_fd a(loop, sv[0]);
  async_fd b(loop, sv[1]);
  std::size_t written = 0, drained = 0;
  auto writer = [&]() -> task<void> {
    std::string chunk(4096, 'x');
    // Fill the socket buffer until EAGAIN, then wait for room: it comes only
    // once the reader drains.
    for (;;) {
      ssize_t n = ::write(a.fd(), chunk.data(), chunk.size());
      if (n > 0) {
        written += static_cast<std::size_t>(n);
        continue;
      }
      EXPECT_EQ(errno, EAGAIN);
      break;
    }
    co_await a.wait_writable();
    EXPECT_GT(drained, 0u);
  };
  auto reader = [&]() -> task<void> {
    co_await sleep_for(1ms);
    char buf[65536];
    while (drained < written) {
      ssize_t n = ::read(b.fd(), buf, sizeof buf);
      if (n > 0) {
        drained += static_cast<std::size_t>(n);
      } else {
        co_await b.wait_readable();
      }
    }
  };
  auto main = [&]() -> task<void> {
    auto w = loop.spawn(writer());
    auto r = loop.spawn(reader());
    co_await w;
    co_await r;
  };
  loop.run(main());
  EXPECT_GT(written, 0u);
  ::close(sv[0]);
  ::close(sv[1]);
}

TEST(AsyncFd, HangupWakesTheReader) {
  event_loop loop;
  pipe_pair p;
  async_fd rfd(loop, p.r);
  auto main = [&]() -> task<std::string> {
    loop.call_soon([&] {
      ::close(p.w);
      p.w = -1;
    });
    co_return co_await read_exactly(rfd, 100);  // ends at EOF
  };
  EXPECT_EQ(loop.run(main()), "");
}

TEST(AsyncFd, CancelledWaitLeavesNoWaiter) {
  event_loop loop;
  pipe_pair p;
  async_fd rfd(loop, p.r);
  auto waiter = [&]() -> task<void> {
    char c;
    EXPECT_LT(::read(p.r, &c, 1), 0);  // empty: EAGAIN
    co_await rfd.wait_readable();
  };
  auto main = [&]() -> task<void> {
    auto h = loop.spawn(waiter());
    co_await yield();
    h.cancel();
    EXPECT_THROW(co_await h, cancelled_error);
    // The registration is gone: a new waiter can wait, and is woken by data.
    auto again = loop.spawn(waiter());
    co_await yield();
    EXPECT_EQ(::write(p.w, "x", 1), 1);
    co_await again;
  };
  loop.run(main());
}

TEST(AsyncFd, SecondWaiterOnSameDirectionIsUsageError) {
  event_loop loop;
  pipe_pair p;
  async_fd rfd(loop, p.r);
  auto waiter = [&]() -> task<void> { co_await rfd.wait_readable(); };
  auto main = [&]() -> task<void> {
    // Consume the initial readiness report (the pipe is not readable, so
    // there is none) and park a first waiter.
    auto first = loop.spawn(waiter());
    co_await yield();
    EXPECT_THROW(co_await rfd.wait_readable(), usage_error);
    EXPECT_EQ(::write(p.w, "x", 1), 1);
    co_await first;
  };
  loop.run(main());
}

TEST(AsyncFd, DestroyedWhileWaitedOnFailsTheWait) {
  event_loop loop;
  pipe_pair p;
  auto fd = std::make_unique<async_fd>(loop, p.r);
  auto waiter = [&]() -> task<void> { co_await fd->wait_readable(); };
  auto main = [&]() -> task<void> {
    auto h = loop.spawn(waiter());
    co_await yield();
    fd.reset();
    EXPECT_THROW(co_await h, usage_error);
  };
  loop.run(main());
  EXPECT_EQ(loop.statistics().io_registrations, 0u);
}

TEST(AsyncFd, LoopDoesNotLeakDescriptors) {
  std::size_t before = test::open_fd_count();
  for (int i = 0; i < 50; ++i) {
    event_loop loop;
    auto main = []() -> task<void> { co_await sleep_for(0ms); };
    loop.run(main());
  }
  EXPECT_EQ(test::open_fd_count(), before);
}

}  // namespace
}  // namespace spindle
