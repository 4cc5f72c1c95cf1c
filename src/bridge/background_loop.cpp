// background_loop: a loop on its own thread, stopped with a report.

#include "spindle/background_loop.hpp"

#include <pthread.h>

#include <future>

#include "doors.hpp"
#include "spindle/detail/thread_name.hpp"

namespace spindle {

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
    detail::refuse_any_loop_thread("background_loop::stop",
                                   "loop '" + loop_->name() + "' stops (up to its shutdown grace)",
                                   "co_await stop_async()");
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
