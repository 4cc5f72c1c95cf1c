// event_loop: the run loop, the reactor, timers and the thread-safe inbox.
//
// One turn of the loop (run_once):
//   1. Take the thread-safe inbox (one atomic exchange) into the ready queue.
//   2. Poll epoll: blocking until the next timer when nothing is ready,
//      otherwise without blocking, once every `poll_interval` steps, so I/O
//      is never starved by a busy ready queue and costs no syscall per step.
//   3. Fire expired timers (they only move entries to the ready queue).
//   4. Run at most `batch` ready entries.
//
// The shutdown phase is in src/loop_shutdown.cpp.

#include "spindle/event_loop.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "detail/loop_access.hpp"
#include "spindle/detail/thread_name.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define SPINDLE_HAS_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SPINDLE_HAS_LSAN 1
#endif
#endif
#ifdef SPINDLE_HAS_LSAN
#include <sanitizer/lsan_interface.h>
#endif
#include "spindle/async_fd.hpp"

namespace spindle {

namespace detail {

constinit thread_local thread_context tls_context;

/// The loop's wake-up: an eventfd written at most once per sleep.
class waker {
 public:
  waker() : fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (fd_ < 0) throw system_error("eventfd", errno);
  }
  ~waker() { ::close(fd_); }
  waker(const waker&) = delete;
  waker& operator=(const waker&) = delete;

  [[nodiscard]] int fd() const noexcept { return fd_; }

  // seq_cst on `pending_` and on the inbox (see post_remote/drain): a
  // producer that finds `pending_` already set is ordered before the loop's
  // reset, so the loop's drain after the reset sees its callback.
  void wake() noexcept {
    if (!pending_.exchange(true, std::memory_order_seq_cst)) {
      std::uint64_t one = 1;
      // EAGAIN only if the counter would overflow: the fd is readable then.
      [[maybe_unused]] ssize_t r = ::write(fd_, &one, sizeof one);
    }
  }
  void consume() noexcept {
    std::uint64_t value = 0;
    [[maybe_unused]] ssize_t r = ::read(fd_, &value, sizeof value);
    pending_.store(false, std::memory_order_seq_cst);
  }

 private:
  int fd_;
  std::atomic<bool> pending_{false};
};

task_node& current_task(const char* what) {
  task_node* t = tls_context.task;
  if (t == nullptr) [[unlikely]] {
    throw usage_error(std::string(what) +
                      " must be awaited inside a task running on an event_loop (no task is running on " +
                      describe_current_thread() + ")");
  }
  return *t;
}

bool is_cancellation(const std::exception_ptr& e) noexcept {
  return error_kind_of(e) == error_kind::cancelled;  // (null: error_kind::exception)
}

}  // namespace detail

namespace {
void never_runs(detail::ready_node*) noexcept {}
// Published in place of a plain callback (its drop is set, like a callback's).
detail::ready_node callback_marker{nullptr, &never_runs, &never_runs};
// Steps between non-blocking I/O polls while the ready queue never empties
// (Tokio uses 61; what matters is amortising the syscall over many steps).
constexpr unsigned poll_interval = 64;
// Ready entries run per turn, so that timers and the inbox get a look-in.
constexpr std::size_t batch = 256;
constexpr int max_events = 256;
}  // namespace

event_loop::event_loop() : event_loop(options{}) {}

event_loop::event_loop(options opts)
    : opts_(std::move(opts)),
      clock_(opts_.clock),
      owner_(std::this_thread::get_id()),
      owner_desc_(detail::describe_current_thread()),
      waker_(std::make_shared<detail::waker>()),
      diag_(&write_to_stderr) {
  stats_.name = opts_.name;
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) throw system_error("epoll_create1", errno);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // null marks the waker
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, waker_->fd(), &ev) != 0) {
    int e = errno;
    ::close(epoll_fd_);
    throw system_error("epoll_ctl(ADD eventfd)", e);
  }
  if (clock_ != nullptr && clock_->is_manual()) {
    // The callback holds the waker, not the loop: it stays valid if the
    // clock outlives the loop or advances concurrently with destruction.
    clock_subscription_ = clock_->subscribe([w = waker_] { w->wake(); });
  }
}

event_loop::~event_loop() {
  if (std::this_thread::get_id() != owner_) {
    std::fprintf(stderr, "spindle: event_loop '%s' owned by %s destroyed from %s; aborting\n",
                 opts_.name.c_str(), owner_desc_.c_str(), detail::describe_current_thread().c_str());
    std::abort();
  }
  bool attached = false;
  {
    std::lock_guard lock(attached_mutex_);
    attached = !attached_.empty();
  }
  if ((live_head_ != nullptr || attached) && !running_.load(std::memory_order_relaxed) &&
      detail::tls_context.loop == nullptr) {
    running_.store(true, std::memory_order_release);
    detail::tls_context.loop = this;
    shutdown_tasks();
    detail::tls_context.loop = nullptr;
    running_.store(false, std::memory_order_release);
  }
  if (clock_subscription_ != 0) clock_->unsubscribe(clock_subscription_);
  // From here on, remote posts (finished blocking calls) are refused.
  remote_->detach();

  // Whatever is still queued will never run: say so, then free it.
  std::size_t dropped = 0;
  for (detail::timer_entry* e : timers_.take_all()) {
    if (e->dispose != nullptr) {
      e->dispose(e);
      ++dropped;
    }
  }
  drain_remote();
  while (head_ != nullptr) {
    detail::ready_node* n = pop_ready();
    // Tasks (drop == null) were handled by shutdown_tasks.
    if (n->drop != nullptr) {
      n->drop(n);
      ++dropped;
    }
  }
  if (dropped != 0) {
    report({diagnostic::kind::dropped_callback,
            opts_.name,
            {},
            {},
            std::to_string(dropped) + " callback(s) destroyed without running",
            nullptr});
  }
  // Abandoned tasks were reported by shutdown_tasks. Their frames are leaked
  // on purpose (see the shutdown steps above): whatever holds their
  // coroutine handle may still resume them.
#ifdef SPINDLE_HAS_LSAN
  for (detail::task_node* t = abandoned_head_; t != nullptr; t = t->live_next) __lsan_ignore_object(t);
#endif
  ::close(epoll_fd_);
}

void event_loop::throw_wrong_thread(const char* method) const {
  throw wrong_thread_error("event_loop '" + opts_.name + "' belongs to " + owner_desc_ + " but " + method +
                           " was called from " + detail::describe_current_thread() +
                           "; use call_soon_threadsafe() or a portal to reach a loop from another thread");
}

event_loop* event_loop::current() noexcept { return detail::tls_context.loop; }

void event_loop::stop() noexcept {
  stop_requested_.store(true, std::memory_order_release);
  waker_->wake();
}

void event_loop::set_diagnostic_handler(diagnostic_handler handler) {
  check_owner("set_diagnostic_handler");
  diag_ = handler ? std::move(handler) : diagnostic_handler(&write_to_stderr);
}

void event_loop::report(const diagnostic& d) noexcept {
  try {
    diag_(d);
  } catch (...) {
    write_to_stderr(d);
  }
}

loop_statistics event_loop::statistics() const {
  check_owner("statistics");
  loop_statistics s = stats_;
  s.ready_depth = ready_size_;
  s.timers = timers_.size();
  s.io_registrations = io_registrations_;
  s.threadsafe_calls = threadsafe_calls_.load(std::memory_order_relaxed);
  s.threadsafe_depth = s.threadsafe_calls > threadsafe_taken_ ? s.threadsafe_calls - threadsafe_taken_ : 0;
  return s;
}

void event_loop::enter_run(const char* method) {
  check_owner(method);
  if (running_.load(std::memory_order_relaxed)) {
    throw loop_running_error("event_loop '" + opts_.name + "' is already running (" + method +
                             " called from inside it); await the task instead");
  }
  if (event_loop* other = detail::tls_context.loop; other != nullptr) {
    throw loop_running_error("cannot run event_loop '" + opts_.name + "': event_loop '" + other->name() +
                             "' is already running on " + detail::describe_current_thread());
  }
  // The step observer, made at the first run (the default one: the stall
  // watchdog, when the diag layer installed its factory).
  if (!observer_made_) {
    observer_made_ = true;
    if (opts_.watchdog.observer) {
      observer_ = opts_.watchdog.observer;
    } else if (opts_.watchdog.threshold) {
      if (detail::step_observer_factory f = detail::default_step_observer(); f != nullptr)
        observer_ = f(opts_.name, opts_.watchdog);
    }
    if (observer_) step_slot_ = std::make_unique<step_slot>();
  }
  if (observer_) {
    observer_->attach(*step_slot_, opts_.name);
    watch_ = step_slot_.get();
  }
  running_.store(true, std::memory_order_release);
  detail::tls_context.loop = this;
}

void event_loop::leave_run() noexcept {
  if (watch_ != nullptr) {
    observer_->detach(*watch_);
    watch_ = nullptr;
    published_ = nullptr;
  }
  detail::tls_context = {};
  stop_requested_.store(false, std::memory_order_relaxed);
  running_.store(false, std::memory_order_release);
}

void event_loop::run_forever() {
  enter_run("run_forever");
  detail::leave_run_guard guard{this};
  while (!stop_requested_.load(std::memory_order_acquire)) run_once();
}

bool event_loop::run_main(detail::task_node* main) {
  while (!main->done() && !stop_requested_.load(std::memory_order_acquire)) run_once();
  const bool stopped_early = !main->done();
  shutdown_tasks();
  return stopped_early;
}

void event_loop::add_task(detail::task_node* n) {
  n->id_ = next_task_id_++;
  detail::live_list_push(live_head_, n);
  ++stats_.tasks_spawned;
  ++stats_.tasks_alive;
  // During shutdown, new tasks are cancelled before they start.
  if (shutting_down_) {
    n->root_scope().cancel();
  } else if (detail::task_node* spawner = detail::tls_context.task;
             spawner != nullptr && &spawner->loop() == this && n->root_scope().parent() == nullptr) {
    // A task spawned inside a scope with a deadline inherits the deadline
    // (as a value: it is not tied to the spawner's scope, which may end first).
    // A task_group child is already linked under the group's scope, which
    // gives it the enclosing deadlines and the group's cancellation: it must
    // stay linked (re-rooting it here once cut it off from group.cancel()).
    time_point d = detail::scope_node::effective_deadline(spawner->scope());
    if (d != detail::scope_node::no_deadline) {
      n->root_scope().detach();
      n->root_scope().attach(*this, nullptr, false, d);
    }
  }
}

void event_loop::on_task_done(detail::task_node* n) noexcept {
  if (n == published_) {
    // The watched step's task ends inside its step (its memory may be a new
    // task's soon): keep its name if the watchdog flagged the step.
    published_ = nullptr;
    if (watch_ != nullptr && watch_->flagged_seq.load(std::memory_order_relaxed) ==
                                 watch_->seq.load(std::memory_order_relaxed)) [[unlikely]] {
      // Out of line, so the common path saves no registers for it.
      auto keep_name = [ this, n ]() __attribute__((noinline, cold)) {
        try {
          step_task_name_ = n->name();
        } catch (...) {
        }
      };
      keep_name();
    }
  }
  if (n->abandoned_) {
    // It came back after all (its awaiter resumed it late).
    detail::live_list_unlink(abandoned_head_, n);
    --stats_.tasks_abandoned;
  } else {
    detail::live_list_unlink(live_head_, n);
    --stats_.tasks_alive;
  }
  const std::exception_ptr& e = n->exception();
  if (!e) {
    ++stats_.tasks_completed;
  } else if (detail::is_cancellation(e)) {
    ++stats_.tasks_cancelled;
  } else {
    ++stats_.tasks_failed;
  }
}

void event_loop::post_remote(detail::ready_node* n) noexcept {
  detail::ready_node* head = inbox_.load(std::memory_order_relaxed);
  do {
    n->next_ready = head;
    // seq_cst: see waker::wake. The push must be ordered before the wake-up
    // check that follows it.
  } while (!inbox_.compare_exchange_weak(head, n, std::memory_order_seq_cst, std::memory_order_relaxed));
  threadsafe_calls_.fetch_add(1, std::memory_order_relaxed);
  waker_->wake();
}

bool detail::loop_remote::post(callback_node* cb) noexcept {
  std::lock_guard lock(mutex_);
  if (loop_ == nullptr) {
    delete cb;
    return false;
  }
  cb->loop = loop_;
  loop_->post_remote(cb);
  return true;
}

void event_loop::drain_remote() noexcept {
  // seq_cst: pairs with post_remote and waker::consume (see waker::wake).
  detail::ready_node* n = inbox_.exchange(nullptr, std::memory_order_seq_cst);
  // The inbox is a stack: reverse it so callbacks run in the order posted
  // (per producer thread).
  detail::ready_node* reversed = nullptr;
  while (n != nullptr) {
    detail::ready_node* next = n->next_ready;
    n->next_ready = reversed;
    reversed = n;
    n = next;
  }
  while (reversed != nullptr) {
    detail::ready_node* next = reversed->next_ready;
    schedule(reversed);
    ++threadsafe_taken_;
    reversed = next;
  }
}

void event_loop::add_timer(detail::timer_entry* e, time_point when) {
  e->deadline = when;
  timers_.push(e);
}

void event_loop::fire_timers(time_point now_tp) {
  while (detail::timer_entry* t = timers_.top()) {
    if (t->deadline > now_tp) break;
    timers_.pop();
    t->fire(t);
  }
}

std::int64_t event_loop::compute_timeout(std::int64_t cap) {
  std::int64_t t = compute_timeout_uncapped();
  if (cap >= 0 && (t == -1 || t > cap)) t = cap;
  return t;
}

std::int64_t event_loop::compute_timeout_uncapped() {
  if (ready_size_ != 0 || inbox_.load(std::memory_order_relaxed) != nullptr ||
      stop_requested_.load(std::memory_order_relaxed)) {
    return 0;
  }
  detail::timer_entry* t = timers_.top();
  if (t == nullptr) return -1;
  const time_point now_tp = now();
  if (t->deadline <= now_tp) return 0;
  if (clock_ != nullptr && clock_->is_manual()) return -2;  // see run_once
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t->deadline - now_tp).count();
}

namespace {
// epoll_pwait2 (Linux 5.11) takes a nanosecond timeout, so a 250 us sleep
// is not rounded up to epoll_wait's millisecond. Older kernels: ENOSYS once,
// then epoll_wait with the timeout rounded up (waking early would spin).
std::atomic<bool> have_pwait2{true};

int wait_for_events(int epfd, epoll_event* events, int max, std::int64_t timeout_ns) {
  if (have_pwait2.load(std::memory_order_relaxed)) {
    timespec ts{};
    timespec* tsp = nullptr;
    if (timeout_ns >= 0) {
      ts.tv_sec = static_cast<time_t>(timeout_ns / 1'000'000'000);
      ts.tv_nsec = static_cast<long>(timeout_ns % 1'000'000'000);
      tsp = &ts;
    }
    int n = ::epoll_pwait2(epfd, events, max, tsp, nullptr);
    if (n >= 0 || errno != ENOSYS) return n;
    have_pwait2.store(false, std::memory_order_relaxed);
  }
  int ms = -1;
  if (timeout_ns >= 0) {
    std::int64_t up = (timeout_ns + 999'999) / 1'000'000;
    ms = up > 1'000'000 ? 1'000'000 : static_cast<int>(up);
  }
  return ::epoll_wait(epfd, events, max, ms);
}
}  // namespace

void event_loop::poll_io(std::int64_t timeout_ns) {
  epoll_event events[max_events];
  ++stats_.polls;
  since_poll_ = 0;
  int n = wait_for_events(epoll_fd_, events, max_events, timeout_ns);
  if (n < 0) {
    if (errno == EINTR) return;
    throw system_error("epoll_wait", errno);
  }
  bool woken = false;
  for (int i = 0; i < n; ++i) {
    void* p = events[i].data.ptr;
    if (p == nullptr) {
      woken = true;
    } else {
      static_cast<async_fd*>(p)->on_events(events[i].events);
    }
  }
  if (woken) waker_->consume();
  // Drain after consuming the wake-up (see waker::wake for why the order matters).
  drain_remote();
}

// The watched batch (in run_once's translation unit, so it inlines).
[[gnu::always_inline]] inline std::size_t event_loop::run_batch_watched() {
  step_slot& w = *watch_;
  std::uint64_t seq = step_seq_;  // in a register across the steps
  std::size_t n = 0;
  while (head_ != nullptr && n != batch) {
    ++n;
    detail::ready_node* r = pop_ready();
    seq += step_slot::step;
    // Who runs: published only when it changes (a loop of awaits in one
    // task, or a run of callbacks, publishes nothing new). Written before
    // `seq` (release); the observer reads seq, these, then seq again (see
    // step_slot). A plain callback is published as `callback_marker`: its
    // node is freed after it runs and its memory may be a task's next.
    detail::ready_node* who = r->drop == nullptr ? r : &callback_marker;
    if (who != published_) [[unlikely]] {
      if (who == r) {
        auto* t = static_cast<detail::task_node*>(r);
        w.task_id.store(t->id(), std::memory_order_relaxed);
        w.where.store(t->where(), std::memory_order_relaxed);
      } else {
        w.task_id.store(0, std::memory_order_relaxed);
        w.where.store(std::source_location{}, std::memory_order_relaxed);
      }
      published_ = who;
    }
    w.seq.store(seq, std::memory_order_release);
    r->run_ready(r);
    if (w.flagged_seq.load(std::memory_order_relaxed) == seq) [[unlikely]]
      on_flagged_step_end(seq);
  }
  step_seq_ = seq;
  w.seq.store(seq | step_slot::idle_bit, std::memory_order_release);
  return n;
}

void event_loop::run_once(std::int64_t max_block_ns) {
  ++stats_.iterations;
  if (inbox_.load(std::memory_order_relaxed) != nullptr) drain_remote();
  bool polled = true;
  if (ready_size_ == 0) {
    std::int64_t timeout = compute_timeout(max_block_ns);
    if (timeout == -2) {
      // Manual clock with a future timer: look at I/O without blocking; if
      // still idle, an auto-advancing clock jumps to the timer, otherwise we
      // wait for I/O, a threadsafe call or the clock's wake-up.
      poll_io(0);
      if (ready_size_ == 0 && !stop_requested_.load(std::memory_order_relaxed)) {
        detail::timer_entry* t = timers_.top();
        if (t != nullptr && t->deadline > now() && !clock_->advance_idle(t->deadline)) poll_io(max_block_ns);
      }
    } else {
      poll_io(timeout);
    }
  } else if (since_poll_ >= poll_interval) {
    poll_io(0);
  } else {
    polled = false;
  }
  // The clock is read only where I/O is polled: after a wait (a timer may
  // be due) and every poll_interval steps of a busy loop; a turn between
  // polls neither reads the clock nor fires timers (a clock read costs
  // 20-30 ns on some VMs, more than a task step). A due timer therefore
  // fires at the next poll, at most poll_interval steps late, as I/O does.
  if (polled) {
    coarse_now_ = now();
    if (!timers_.empty()) fire_timers(coarse_now_);
  }
  // A batch: up to `batch` ready entries, including those that become
  // ready during it (a woken joiner, a spawned child), so a spawn + await
  // takes one turn, not two. Polls stay as frequent as before: a turn
  // starting past poll_interval steps polls first.
  std::size_t n = 0;
  if (watch_ != nullptr) {
    n = run_batch_watched();
  } else {
    while (head_ != nullptr && n != batch) {
      ++n;
      detail::ready_node* r = pop_ready();
      r->run_ready(r);
    }
  }
  since_poll_ += static_cast<unsigned>(n);
  stats_.steps += n;
}

void event_loop::on_flagged_step_end(std::uint64_t seq) noexcept {
  step_slot& w = *watch_;
  flagged_step f;
  f.seq = seq;
  f.task_id = w.task_id.load(std::memory_order_relaxed);
  f.where = w.where.load(std::memory_order_relaxed);
  try {
    if (published_ != nullptr && published_->drop == nullptr) {
      // The step's task, still suspended, so alive.
      f.task_name = static_cast<detail::task_node*>(published_)->name();
    } else {
      f.task_name = std::move(step_task_name_);  // it ended inside the step
    }
  } catch (...) {
  }
  step_task_name_.clear();
  if (std::optional<duration> held = observer_->on_flagged_step_end(w, std::move(f))) {
    ++stats_.stalls;
    stats_.longest_stall = std::max(stats_.longest_stall, *held);
  }
}

namespace detail {
namespace {
constinit std::atomic<step_observer_factory> default_observer_factory{nullptr};
}  // namespace

void set_default_step_observer(step_observer_factory f) noexcept {
  default_observer_factory.store(f, std::memory_order_release);
}

step_observer_factory default_step_observer() noexcept {
  return default_observer_factory.load(std::memory_order_acquire);
}
}  // namespace detail

}  // namespace spindle
