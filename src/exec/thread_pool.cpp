// thread_pool: named, bounded pools for blocking work.
//
// Threads are detached and share `pool_state` (a shared_ptr each), so a
// zombie thread stuck in a call that ignores its stop token can outlive the
// pool object safely. All state below is guarded by `pool_state::mutex`;
// user code (the calls) and posts to loops run without it.
//
// Shutdown, in order:
//   1. stop accepting (submissions fail with rejected_error);
//   2. cancel_queued: cancel every queued job now; drain: let them start;
//   3. wait up to `grace` for the queue to empty and running calls to end;
//   4. cancel what is still queued, abandon what is still running (stop
//      requested; the thread becomes a zombie), answer their awaiters with
//      shutdown_error;
//   5. tell idle workers to exit; report.

#include "spindle/thread_pool.hpp"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <thread>

namespace spindle {

namespace detail {

namespace {
constexpr std::size_t sample_window = 1024;

struct samples {
  std::vector<std::int64_t> ring;
  std::size_t next = 0;
  std::uint64_t total = 0;
  std::int64_t sum = 0;  // of every sample, not only the window
  void add(std::chrono::nanoseconds d) {
    sum += d.count();
    if (ring.size() < sample_window) {
      ring.push_back(d.count());
    } else {
      ring[next] = d.count();
      next = (next + 1) % sample_window;
    }
    ++total;
  }
  latency_summary summary() const {
    latency_summary s;
    s.samples = total;
    s.sum = duration(sum);
    if (ring.empty()) return s;
    std::vector<std::int64_t> v = ring;
    std::sort(v.begin(), v.end());
    s.p50 = duration(v[v.size() / 2]);
    s.p99 = duration(v[std::min(v.size() - 1, v.size() * 99 / 100)]);
    return s;
  }
};

std::string job_label(const pool_job& j) {
  if (!j.name.empty()) return j.name;
  std::string s = "#";  // (not "#" + to_string: g++ 12 -Wrestrict false positive)
  s += std::to_string(j.id);
  return s;
}
}  // namespace

class pool_state final : public std::enable_shared_from_this<pool_state>, public shutdown_participant {
 public:
  explicit pool_state(thread_pool_options o) : opts(std::move(o)) {
    if (opts.threads == 0) opts.threads = 1;
    if (opts.queue_capacity == 0) opts.queue_capacity = 1;
    if (opts.max_zombies == 0) opts.max_zombies = opts.threads;
    if (opts.max_threads < opts.threads) opts.max_threads = opts.threads;
  }

  thread_pool_options opts;
  mutable std::mutex mutex;
  std::condition_variable work_cv;  // workers wait for jobs
  std::condition_variable idle_cv;  // shutdown waits for the pool to empty
  std::deque<std::shared_ptr<pool_job>> queue;
  std::vector<std::shared_ptr<pool_job>> running;
  // Submitters waiting for room (when_full::wait): each is woken through its
  // loop and retries; all are woken when room frees (simple and correct).
  struct room_waiter {
    std::shared_ptr<loop_remote> remote;
    std::shared_ptr<bool> signalled;  // loop thread only
    task_node* task;                  // loop thread only
  };
  std::vector<std::shared_ptr<room_waiter>> room_waiters;

  std::size_t workers = 0;  // live threads, zombies excluded
  std::size_t busy = 0;
  std::size_t zombies = 0;
  bool accepting = true;
  bool stopping = false;
  bool shut_down = false;                 // shutdown() has run (by the owner or by the attached loop)
  std::shared_ptr<loop_remote> attached;  // the attach_to loop, for the destructor's report
  std::uint64_t next_id = 1;
  std::uint64_t submitted = 0, completed = 0, failed = 0, rejected = 0, cancelled = 0, abandoned = 0;
  // Names of the jobs that did not complete, for the shutdown report
  // (bounded: a pool that cancels millions keeps the first 1,000 of each).
  std::vector<std::string> cancelled_names, abandoned_names;
  static constexpr std::size_t max_names = 1000;
  void note_cancelled_locked(const pool_job& job) {
    ++cancelled;
    if (cancelled_names.size() < max_names) cancelled_names.push_back(job_label(job));
  }
  samples queue_wait, run_time;

  void start_worker_locked() {
    ++workers;
    std::thread([self = shared_from_this()] { self->worker(); }).detach();
  }

  void wake_room_waiters_locked() {
    for (auto& w : room_waiters) {
      w->remote->post(make_callback([w] {
        *w->signalled = true;
        if (w->task != nullptr) std::exchange(w->task, nullptr)->wake();
      }));
    }
    room_waiters.clear();
  }

  // Answers a job's awaiter on its loop (if the loop still exists). Takes
  // the caller's reference, so the job (and the exception it may hold) is
  // released on the loop thread, where it was last used.
  static void answer(std::shared_ptr<pool_job> job) {
    std::shared_ptr<loop_remote> remote = job->remote;
    remote->post(make_callback([job = std::move(job)] { blocking_wait::on_answer(job); }));
  }

  // Steps 1-5 of the file comment; later calls only report.
  shutdown_report shutdown(shutdown_policy policy, duration grace) {
    shutdown_report r;
    r.name = opts.name;
    std::unique_lock lock(mutex);
    if (!shut_down) {
      shut_down = true;
      accepting = false;
      if (policy == shutdown_policy::cancel_queued) cancel_queued_locked();
      const auto until = saturating_add(std::chrono::steady_clock::now(), grace);
      idle_cv.wait_until(lock, until, [&] { return queue.empty() && busy == 0; });
      cancel_queued_locked();
      for (const auto& job : running) {
        if (job->st != pool_job::state::running) continue;
        job->ended_by_shutdown = true;
        abandon_locked(job);
        answer(job);
      }
      stopping = true;
      work_cv.notify_all();
      wake_room_waiters_locked();  // parked submitters retry and see rejected_error
    }
    r.submitted = submitted;
    r.completed = completed;
    r.failed = failed;
    r.cancelled = cancelled;
    r.abandoned = abandoned;
    r.still_running = submitted - (completed + failed + cancelled + abandoned);
    r.cancelled_jobs = cancelled_names;
    r.abandoned_jobs = abandoned_names;
    return r;
  }

  std::optional<shutdown_report> shutdown_for_loop() noexcept override {
    {
      std::lock_guard lock(mutex);
      if (shut_down) return std::nullopt;
    }
    try {
      return shutdown(shutdown_policy::cancel_queued, opts.abandon_grace);
    } catch (...) {  // allocation failure while copying names
      return std::nullopt;
    }
  }

  void cancel_queued_locked() {
    while (!queue.empty()) {
      std::shared_ptr<pool_job> job = std::move(queue.front());
      queue.pop_front();
      job->st = pool_job::state::cancelled;
      job->ended_by_shutdown = true;
      note_cancelled_locked(*job);
      answer(job);
    }
  }

  void abandon_locked(const std::shared_ptr<pool_job>& job) {
    job->st = pool_job::state::abandoned;
    job->stop.request_stop();
    ++abandoned;
    if (abandoned_names.size() < max_names) abandoned_names.push_back(job_label(*job));
    ++zombies;
    --workers;  // its thread is a zombie now
    if (!stopping) start_worker_locked();
  }

  void worker() {
    std::unique_lock lock(mutex);
    for (;;) {
      auto has_work = [&] { return stopping || !queue.empty(); };
      if (workers > opts.threads && !stopping) {
        // An elastic extra: leave after idle_timeout without work.
        if (!work_cv.wait_for(lock, opts.idle_timeout, has_work)) {
          // Others may have left meanwhile: never go below the floor.
          if (workers <= opts.threads) continue;
          --workers;
          idle_cv.notify_all();
          return;
        }
      } else {
        work_cv.wait(lock, has_work);
      }
      if (queue.empty()) {  // stopping and nothing left
        --workers;
        idle_cv.notify_all();
        return;
      }
      std::shared_ptr<pool_job> job = std::move(queue.front());
      queue.pop_front();
      job->st = pool_job::state::running;
      job->started = std::chrono::steady_clock::now();
      queue_wait.add(job->started - job->enqueued);
      running.push_back(job);
      ++busy;
      if (!room_waiters.empty()) wake_room_waiters_locked();
      lock.unlock();

      job->invoke(job->stop.get_token());  // user code: no lock held

      lock.lock();
      --busy;
      std::erase(running, job);
      if (job->st == pool_job::state::abandoned) {
        // This thread was a zombie; its replacement exists. Leave.
        --zombies;
        if (!room_waiters.empty()) wake_room_waiters_locked();
        idle_cv.notify_all();
        return;
      }
      job->st = pool_job::state::finished;
      run_time.add(std::chrono::steady_clock::now() - job->started);
      job->failed() ? ++failed : ++completed;
      idle_cv.notify_all();
      lock.unlock();
      answer(std::move(job));
      lock.lock();
    }
  }
};

// ---- submission ------------------------------------------------------------

namespace {
struct room_wait {
  std::shared_ptr<pool_state::room_waiter> w;
  [[nodiscard]] bool await_ready() const noexcept { return *w->signalled; }
  bool await_suspend(std::coroutine_handle<> h) {
    task_node& t = current_task("run_blocking");
    if (t.cancel_requested()) return false;
    w->task = &t;
    t.suspend(h, nullptr);  // not cancellable while parked; see submit()
    return true;
  }
  void await_resume() const noexcept {}
};
}  // namespace

task<void> submit(std::shared_ptr<pool_state> pool, std::shared_ptr<pool_job> job) {
  task_node& me = current_task("run_blocking");
  job->remote = me.loop().remote();
  for (;;) {
    std::shared_ptr<pool_state::room_waiter> waiter;
    {
      std::lock_guard lock(pool->mutex);
      if (!pool->accepting) {
        ++pool->rejected;
        throw rejected_error("thread_pool '" + pool->opts.name + "' is shut down");
      }
      const bool room =
          pool->queue.size() < pool->opts.queue_capacity && pool->zombies < pool->opts.max_zombies;
      if (room) {
        job->id = pool->next_id++;
        job->enqueued = std::chrono::steady_clock::now();
        pool->queue.push_back(job);
        ++pool->submitted;
        // Elastic growth: more queued work than idle threads, and room to grow.
        if (pool->queue.size() > pool->workers - pool->busy && pool->workers < pool->opts.max_threads) {
          pool->start_worker_locked();
        } else {
          pool->work_cv.notify_one();
        }
        co_return;
      }
      if (pool->opts.full == when_full::reject) {
        ++pool->rejected;
        throw rejected_error("thread_pool '" + pool->opts.name + "' is full (" +
                             std::to_string(pool->queue.size()) + " queued, " +
                             std::to_string(pool->zombies) + " zombies)");
      }
      waiter = std::make_shared<pool_state::room_waiter>(
          pool_state::room_waiter{job->remote, std::make_shared<bool>(false), nullptr});
      pool->room_waiters.push_back(waiter);
    }
    // Wait for room without blocking the loop. Cancellation is checked each
    // time round (a parked submitter is woken whenever room frees, or on
    // shutdown), so waiting costs no cancel hook; a cancelled task stops
    // here before it ever queues.
    room_wait parked{waiter};
    co_await parked;
    if (me.cancel_requested()) {
      std::lock_guard lock(pool->mutex);
      std::erase(pool->room_waiters, waiter);
      throw cancelled_error();
    }
  }
}

// ---- waiting for the answer --------------------------------------------------

blocking_wait::~blocking_wait() {
  // Normal paths clear job_->awaiter before resuming; this guards a frame
  // destroyed while still registered (an abandoned task at loop teardown).
  if (job_ && job_->awaiter == this) job_->awaiter = nullptr;
}

bool blocking_wait::await_suspend(std::coroutine_handle<> h) {
  task_node& t = current_task("run_blocking");
  task_ = &t;
  on_cancel = &on_cancel_hook;
  job_->awaiter = this;
  waiting_ = true;
  t.suspend(h, this);
  if (t.cancel_requested()) on_cancel_hook(this);
  return true;
}

void blocking_wait::await_resume() const {
  if (shutdown_)
    throw shutdown_error("thread_pool '" + pool_->opts.name + "' shut down before the call finished");
  if (cancelled_) throw cancelled_error();
}

void blocking_wait::on_answer(const std::shared_ptr<pool_job>& job) noexcept {
  blocking_wait* w = job->awaiter;
  if (w == nullptr) return;  // already answered (cancelled or abandoned)
  job->awaiter = nullptr;
  w->waiting_ = false;
  w->grace_.cancel();
  bool by_shutdown = false;
  {
    std::lock_guard lock(w->pool_->mutex);
    by_shutdown = job->ended_by_shutdown;
  }
  if (by_shutdown) {
    w->shutdown_ = true;
  } else if (w->task_->cancel_requested()) {
    w->cancelled_ = true;  // it finished within the grace, but the task is cancelled
  }
  w->task_->wake();
}

void blocking_wait::on_cancel_hook(cancel_hook* self) noexcept {
  auto* w = static_cast<blocking_wait*>(self);
  if (!w->waiting_) return;
  pool_state& pool = *w->pool_;
  std::unique_lock lock(pool.mutex);
  switch (w->job_->st) {
    case pool_job::state::queued: {
      // Never runs: out of the queue at once.
      std::erase(pool.queue, w->job_);
      w->job_->st = pool_job::state::cancelled;
      pool.note_cancelled_locked(*w->job_);
      if (!pool.room_waiters.empty()) pool.wake_room_waiters_locked();
      pool.idle_cv.notify_all();
      lock.unlock();
      w->job_->awaiter = nullptr;
      w->waiting_ = false;
      w->cancelled_ = true;
      w->task_->wake();
      return;
    }
    case pool_job::state::running: {
      w->job_->stop.request_stop();
      lock.unlock();
      // The call gets the grace period to honour its stop token.
      w->grace_ = w->task_->loop().call_later(pool.opts.abandon_grace, [w] { w->abandon(); });
      return;
    }
    default: return;  // its answer is already on the way
  }
}

void blocking_wait::abandon() noexcept {
  if (!waiting_) return;
  {
    std::lock_guard lock(pool_->mutex);
    if (job_->st != pool_job::state::running) return;  // finished meanwhile: answer coming
    pool_->abandon_locked(job_);
  }
  job_->awaiter = nullptr;
  waiting_ = false;
  cancelled_ = true;
  task_->wake();
}

}  // namespace detail

// ---- thread_pool -------------------------------------------------------------

thread_pool::thread_pool(thread_pool_options opts)
    : state_(std::make_shared<detail::pool_state>(std::move(opts))) {
  if (event_loop* loop = state_->opts.attach_to) {
    state_->attached = loop->remote();
    loop->attach_shutdown_participant(state_);
  }
  std::lock_guard lock(state_->mutex);
  for (std::size_t i = 0; i < state_->opts.threads; ++i) state_->start_worker_locked();
}

thread_pool::~thread_pool() {
  {
    std::lock_guard lock(state_->mutex);
    if (state_->shut_down) return;  // its owner or its loop has the report
  }
  shutdown_report r = state_->shutdown(shutdown_policy::cancel_queued, state_->opts.abandon_grace);
  if (r.cancelled + r.abandoned == 0) return;
  diagnostic d{diagnostic::kind::abandoned_task,
               state_->opts.name,
               {},
               {},
               "thread_pool destroyed without shutdown(): " + r.to_string(),
               nullptr};
  if (state_->opts.on_report) {
    try {
      state_->opts.on_report(d);
      return;
    } catch (...) {
    }
  }
  if (state_->attached) {
    event_loop* here = event_loop::current();
    if (here != nullptr && here->remote() == state_->attached) {
      here->report(d);
      return;
    }
    auto deliver = [d] {
      if (event_loop* loop = event_loop::current()) loop->report(d);
    };
    if (state_->attached->post(detail::make_callback(std::move(deliver)))) return;
  }
  write_to_stderr(d);
}

const std::string& thread_pool::name() const noexcept { return state_->opts.name; }

pool_statistics thread_pool::statistics() const {
  detail::pool_state& p = *state_;
  std::lock_guard lock(p.mutex);
  return {p.opts.name,         p.workers, p.busy,     p.queue.size(), p.zombies,   p.submitted,
          p.completed,         p.failed,  p.rejected, p.cancelled,    p.abandoned, p.queue_wait.summary(),
          p.run_time.summary()};
}

shutdown_report thread_pool::shutdown(shutdown_policy policy, duration grace) {
  return state_->shutdown(policy, grace);
}

}  // namespace spindle
