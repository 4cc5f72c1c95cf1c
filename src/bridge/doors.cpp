// The bridge's doors between loops (doors.hpp): the check that refuses a
// blocking call on any loop's thread, and the thread stop_async() joins on.

#include "doors.hpp"

#include <memory>

#include "spindle/cancel_scope.hpp"
#include "spindle/detail/callback.hpp"
#include "spindle/detail/thread_name.hpp"
#include "spindle/error.hpp"
#include "spindle/event.hpp"
#include "spindle/event_loop.hpp"

namespace spindle::detail {

void refuse_any_loop_thread(const char* method, std::string_view what, std::string_view door) {
  // Blocking a loop's thread freezes every task of that loop (the trap of
  // the seeds: one loop frozen by a call into another).
  if (const event_loop* running = event_loop::current(); running != nullptr) {
    throw usage_error(std::string(method) + " called on the thread of loop '" + running->name() + "' (" +
                      describe_current_thread() + "): it would block that loop while " + std::string(what) +
                      "; " + std::string(door) + " instead");
  }
}

task<void> run_on_new_thread(std::function<void()> fn, std::mutex& m, std::vector<std::thread>& keepers,
                             const char* method) {
  event_loop* here = event_loop::current();
  if (here == nullptr)
    throw usage_error(std::string(method) +
                      ": await it in a task on a running loop; from a plain thread, call stop()");
  auto done = std::make_shared<event>("stop_async");
  auto failure = std::make_shared<std::exception_ptr>();
  std::thread t([fn = std::move(fn), remote = here->remote(), done, failure]() mutable {
    try {
      fn();
    } catch (...) {
      *failure = std::current_exception();
    }
    // The event is set (and, if the task is gone, dropped) on its loop.
    remote->post(make_callback([d = std::move(done)] { d->set(); }));
  });
  {
    std::lock_guard lock(m);
    keepers.push_back(std::move(t));
  }
  co_await shielded(done->wait());
  if (*failure) std::rethrow_exception(*failure);
}

void join_all(std::mutex& m, std::vector<std::thread>& keepers) noexcept {
  std::vector<std::thread> all;
  {
    std::lock_guard lock(m);
    all.swap(keepers);
  }
  for (auto& t : all) t.join();
}

}  // namespace spindle::detail
