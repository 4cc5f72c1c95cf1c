// portal: answer slots (a futex each), posting, cancellation, shutdown.

#include "spindle/portal.hpp"

#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <ctime>

#include "doors.hpp"
#include "spindle/detail/thread_name.hpp"

namespace spindle::detail {

namespace {

long futex(std::atomic<std::uint32_t>* word, int op, std::uint32_t val, const timespec* abs) noexcept {
  static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));
  return ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), op | FUTEX_PRIVATE_FLAG, val, abs,
                   nullptr, FUTEX_BITSET_MATCH_ANY);
}

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// A short spin before sleeping: a portal call that the loop answers within
// a few microseconds costs no futex sleep/wake pair (two syscalls and a
// cross-CPU wake-up). Only when this thread may run on more than one CPU:
// on one CPU the spin only delays the loop it waits for.
constexpr int spin_rounds = 64;
int spin_budget() noexcept {
  thread_local const int budget = [] {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 0;
    return CPU_COUNT(&set) > 1 ? spin_rounds : 0;
  }();
  return budget;
}

}  // namespace

bool portal_call_base::wait_until(const std::chrono::steady_clock::time_point* deadline) noexcept {
  for (int i = 0, n = spin_budget(); i < n; ++i) {
    if (state_.load(std::memory_order_acquire) == answered) return true;
    cpu_relax();
  }
  timespec abs{};
  if (deadline != nullptr) {
    // libstdc++'s steady_clock is CLOCK_MONOTONIC, which FUTEX_WAIT_BITSET uses.
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline->time_since_epoch()).count();
    if (ns < 0) ns = 0;
    abs.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
    abs.tv_nsec = static_cast<long>(ns % 1'000'000'000);
  }
  for (;;) {
    std::uint32_t s = state_.load(std::memory_order_acquire);
    if (s == answered) return true;
    if (s == pending && !state_.compare_exchange_strong(s, sleeping, std::memory_order_acq_rel)) continue;
    if (deadline != nullptr && std::chrono::steady_clock::now() >= *deadline) return ready();
    const long r = futex(&state_, FUTEX_WAIT_BITSET, sleeping, deadline != nullptr ? &abs : nullptr);
    if (r == -1 && errno == ETIMEDOUT) return ready();
  }
}

void portal_call_base::publish() noexcept {
  // The answering side holds a reference, so the word outlives the wake.
  if (state_.exchange(answered, std::memory_order_acq_rel) == sleeping)
    futex(&state_, FUTEX_WAKE, INT_MAX, nullptr);
  // A task awaiting on a loop (submit_to): wake it there. Under the lock,
  // so clear_waker() never returns while a wake still runs. (answered is
  // set first: a set_waker() that takes the lock later sees it.)
  std::lock_guard lock(waker_mutex_);
  if (waker_) {
    std::function<void()> wake = std::move(waker_);
    waker_ = nullptr;
    try {
      wake();
    } catch (...) {
      // Only an allocation failure can land here; the awaiting task would
      // wait for ever: the process cannot keep its contract any more.
      std::terminate();
    }
  }
}

bool portal_call_base::set_waker(std::function<void()> wake) {
  std::lock_guard lock(waker_mutex_);
  if (ready()) return false;
  waker_ = std::move(wake);
  return true;
}

void portal_call_base::clear_waker() noexcept {
  std::lock_guard lock(waker_mutex_);
  waker_ = nullptr;
}

void portal_call_base::publish_value() noexcept {
  owner_->completed.fetch_add(1, std::memory_order_relaxed);
  publish();
}

std::atomic<std::uint64_t>& portal_call_base::counter_for(const std::exception_ptr& e) noexcept {
  try {
    std::rethrow_exception(e);
  } catch (const shutdown_error&) {
    return owner_->shut_down;
  } catch (const timeout_error&) {
    return owner_->timed_out;
  } catch (const cancelled_error&) {
    return owner_->cancelled;
  } catch (...) {
  }
  return owner_->failed;
}

void portal_call_base::answer_exception(std::exception_ptr e) noexcept {
  if (!claim()) return;
  std::atomic<std::uint64_t>& counter = counter_for(e);
  // Moved in: no reference to the exception is left on this thread when the
  // caller wakes (the caller takes the slot's reference with it).
  store_exception(std::move(e));
  counter.fetch_add(1, std::memory_order_relaxed);
  publish();
}

void portal_call_base::answer_shutdown(const char* what) noexcept {
  std::exception_ptr e;
  try {
    e = std::make_exception_ptr(shutdown_error("loop '" + owner_->loop_name() + "': " + what));
  } catch (...) {
    e = std::current_exception();
  }
  answer_exception(std::move(e));
}

portal_state::portal_state(event_loop& loop)
    : remote_(loop.remote()), owner_(loop.owner_thread()), loop_name_(loop.name()) {}

void portal_state::check_not_loop_thread(const char* method) const {
  if (std::this_thread::get_id() == owner_) {
    throw wrong_thread_error(std::string(method) + " called on the thread of loop '" + loop_name_ + "' (" +
                             describe_current_thread() +
                             "): it would block the loop it waits for; co_await the task instead");
  }
  refuse_any_loop_thread(method, "loop '" + loop_name_ + "' works",
                         "from a task, co_await submit_to(portal, make_task)");
}

portal_statistics portal_state::statistics() const noexcept {
  return {submitted.load(std::memory_order_relaxed), completed.load(std::memory_order_relaxed),
          failed.load(std::memory_order_relaxed),    cancelled.load(std::memory_order_relaxed),
          timed_out.load(std::memory_order_relaxed), shut_down.load(std::memory_order_relaxed)};
}

void portal_state::post(callback_node* cb) noexcept {
  // A refused post deletes the callback here; its guard answers.
  remote_->post(cb);
}

void portal_state::reject_closed(portal_call_base& call) noexcept {
  call.answer_shutdown("the portal is closed (the loop has shut down)");
}

void portal_state::request_cancel(const std::shared_ptr<portal_call_base>& call) noexcept {
  if (call->ready()) return;
  call->cancel_requested.store(true, std::memory_order_release);
  try {
    post(make_callback([c = call] {
      if (c->runner != nullptr) c->runner->request_cancel();
    }));
  } catch (...) {  // allocation failure: the task runs to its own end
  }
}

void portal_state::time_out(const std::shared_ptr<portal_call_base>& call, duration timeout) noexcept {
  try {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count();
    call->answer_exception(
        std::make_exception_ptr(timeout_error("portal call timed out after " + std::to_string(ms) +
                                              " ms; its task is cancelled on loop '" + loop_name_ + "'")));
  } catch (...) {
    call->answer_exception(std::current_exception());
  }
  request_cancel(call);
}

void portal_state::add_runner(portal_call_base* c, task_node* t) noexcept {
  c->runner = t;
  c->prev = nullptr;
  c->next = runners_;
  if (runners_ != nullptr) runners_->prev = c;
  runners_ = c;
}

void portal_state::remove_runner(portal_call_base* c) noexcept {
  if (c->runner == nullptr) return;  // already taken off by shutdown_for_loop
  c->runner = nullptr;
  if (c->prev != nullptr) {
    c->prev->next = c->next;
  } else {
    runners_ = c->next;
  }
  if (c->next != nullptr) c->next->prev = c->prev;
  c->prev = c->next = nullptr;
}

std::optional<shutdown_report> portal_state::shutdown_for_loop() noexcept {
  closed_.store(true, std::memory_order_release);
  // Tasks still here outlived the loop's grace (abandoned): their callers
  // get an answer now.
  while (portal_call_base* c = runners_) {
    remove_runner(c);
    c->answer_shutdown("the loop stopped and abandoned the portal call's task (it ignored cancellation)");
  }
  return std::nullopt;
}

}  // namespace spindle::detail

namespace spindle {

portal::portal(event_loop& loop) : state_(std::make_shared<detail::portal_state>(loop)) {
  loop.attach_shutdown_participant(state_);
}

}  // namespace spindle
