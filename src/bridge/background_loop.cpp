// background_loop: a loop on its own thread, stopped with a report.

#include "spindle/background_loop.hpp"

#include <pthread.h>

#include <future>

#include "spindle/cancel_scope.hpp"
#include "spindle/detail/thread_name.hpp"
#include "spindle/event.hpp"
#include "stop_async.hpp"

namespace spindle {

namespace detail {

void refuse_blocking_stop(const char* method, const std::string& what) {
  if (event_loop* here = event_loop::current(); here != nullptr)
    throw usage_error(std::string(method) + " called on the thread of loop '" + here->name() + "': joining " +
                      what +
                      " would block that loop for up to its shutdown grace; co_await stop_async() there");
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

}  // namespace detail

background_loop::background_loop(background_loop_options opts) {
  std::promise<void> ready;
  std::future<void> started = ready.get_future();
  thread_ = std::thread([this, &ready, opts = std::move(opts)]() mutable {
    // The kernel's thread name (15 bytes) shows in top, gdb and wrong_thread errors.
    std::string tname = opts.loop.name.substr(0, 15);
    pthread_setname_np(pthread_self(), tname.c_str());
    std::optional<event_loop> loop;
    try {
      if (opts.on_thread_start) opts.on_thread_start();
      loop.emplace(opts.loop);
      if (opts.on_diagnostic) loop->set_diagnostic_handler(std::move(opts.on_diagnostic));
      loop_ = &*loop;
      remote_ = loop->remote();
      portal_.emplace(*loop);
      thread_id_ = std::this_thread::get_id();
    } catch (...) {
      ready.set_exception(std::current_exception());
      return;
    }
    ready.set_value();  // `ready` is gone from here on
    loop->run_forever();
    report_ = loop->shutdown();
    loop.reset();  // callbacks still queued are dropped: their portal calls get shutdown_error
  });
  try {
    started.get();
  } catch (...) {
    thread_.join();
    throw;
  }
}

background_loop::~background_loop() {
  detail::join_all(stoppers_mutex_, stoppers_);  // a stop_async() under way ends first
  if (stopped_.load(std::memory_order_acquire)) return;
  // (Blocking even on a loop thread: a destructor has no other choice.)
  loop_shutdown_report r = stop_joining();
  bool lost = !r.abandoned_tasks.empty();
  for (const auto& p : r.pools) lost = lost || p.cancelled + p.abandoned != 0;
  if (lost) {
    write_to_stderr({diagnostic::kind::abandoned_task,
                     r.loop,
                     {},
                     {},
                     "background_loop destroyed without stop(): " + r.to_string(),
                     nullptr});
  }
}

loop_shutdown_report background_loop::stop() {
  if (stopped_.load(std::memory_order_acquire)) return report_;
  if (std::this_thread::get_id() != thread_id_)
    detail::refuse_blocking_stop("background_loop::stop", "loop '" + loop_->name() + "'");
  return stop_joining();
}

task<loop_shutdown_report> background_loop::stop_async() {
  if (stopped_.load(std::memory_order_acquire)) co_return report_;
  if (std::this_thread::get_id() == thread_id_)
    throw wrong_thread_error("background_loop::stop_async awaited on loop '" + loop_->name() +
                             "''s own thread: it would wait for itself");
  co_await detail::run_on_new_thread([this] { (void)stop_joining(); }, stoppers_mutex_, stoppers_,
                                     "background_loop::stop_async");
  co_return report_;
}

loop_shutdown_report background_loop::stop_joining() {
  if (std::this_thread::get_id() == thread_id_) {
    throw wrong_thread_error("background_loop::stop called on loop '" + loop_->name() +
                             "''s own thread: it would join itself; post the request to another thread");
  }
  std::lock_guard lock(stop_mutex_);
  if (!stopped_.load(std::memory_order_relaxed)) {
    // Not loop_->stop() from here: the loop thread may see the request,
    // shut down and destroy the loop while stop() is still waking it. The
    // remote's post is safe against that.
    remote_->post(detail::make_callback([] { event_loop::current()->stop(); }));
    thread_.join();
    loop_ = nullptr;
    stopped_.store(true, std::memory_order_release);
  }
  return report_;
}

bool background_loop::running() const noexcept { return !stopped_.load(std::memory_order_acquire); }

loop_statistics background_loop::statistics() {
  if (std::this_thread::get_id() == thread_id_) return loop_->statistics();
  return portal_->call_sync([this] { return loop_->statistics(); });
}

}  // namespace spindle
