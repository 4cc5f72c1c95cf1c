// spindle fetch --loops N (docs/cli.md, "Several loops").

#include "fetch_loops.hpp"

#include <algorithm>
#include <deque>
#include <map>
#include <mutex>
#include <unordered_map>

#include "spindle/event.hpp"
#include "spindle/loop_group.hpp"
#include "spindle/mutex.hpp"
#include "spindle/portal.hpp"
#include "spindle/sleep.hpp"

namespace spindle::cli {

// --loops N (N > 1): a fetcher per loop of a loop_group, each with its own
// client (connections are per loop), sharing one http::fetch_limits, so
// --per-host and --rate count all loops together. The calling thread's
// loop (the main loop) keeps everything else: it reads the inputs (the one
// cli_source, behind a lock) and hands them out in small batches to the
// loop that asks (a loop asks when its window has room: the least loaded
// loop takes the next inputs), takes the results back (each loop's sink
// queues them under a mutex and wakes the main loop through its
// call_soon_threadsafe), puts them in input order with --ordered, and
// writes them. A stop (a signal, a failed write) goes to every loop; each
// fetcher has the same --deadline, and after it each reads what is left
// of a regular file, every line a cancelled result, as with one loop.
class loop_fetch::impl {
 public:
  impl(const fetch_options& o, event_loop& main, cli_source& source, result_writer& out,
       const http::fetch_options& engine_opts)
      : o_(o), main_(main), main_portal_(main), source_(source), out_(out) {
    const std::size_t n = o.loops;
    auto limits = std::make_shared<http::fetch_limits>(o.per_host, o.rate);
    for (std::size_t i = 0; i < n; ++i) {
      auto w = std::make_unique<worker>();
      w->opts = engine_opts;
      // --concurrency is the total: split over the loops (at least one each).
      w->opts.concurrency = std::max<std::size_t>(1, o.concurrency / n + (i < o.concurrency % n ? 1 : 0));
      w->opts.limits = limits;
      w->opts.ordered = false;  // (the main loop orders)
      w->opts.input_buffer = std::max<std::size_t>(16, w->opts.concurrency);
      workers_.push_back(std::move(w));
    }
    reorder_limit_ = 4 * std::max<std::size_t>(o.concurrency, 1);
    loop_group_options go;
    go.loops = n;
    go.name = "spindle-fetch";
    group_ = std::make_unique<loop_group>(go);
  }
  ~impl() {
    // The loops end before the workers they use.
    if (group_) (void)group_->stop();
  }
  impl(const impl&) = delete;
  impl& operator=(const impl&) = delete;

  // On the main loop: runs every loop's fetcher to its end; the results
  // are all written (or held by the writer) when it returns.
  task<http::fetch_statistics> run() {
    auto draining = main_.spawn(drain_results(), "fetch-results");
    std::optional<join_handle<void>> timer;
    if (o_.deadline > duration::zero()) timer.emplace(main_.spawn(deadline_timer(), "fetch-loops-deadline"));
    std::vector<join_handle<void>> running;
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      running.push_back(main_.spawn(run_on_loop(i), "fetch-loop"));
    }
    for (auto& r : running) {
      std::exception_ptr failure;
      try {
        co_await r;
      } catch (...) {
        failure = std::current_exception();
      }
      if (failure && !error_) error_ = failure;
    }
    if (timer) timer->cancel();
    draining.cancel();
    // Every wake posted has run (none is left to a loop that is gone), and
    // every result is taken.
    for (;;) {
      std::uint64_t posted = 0;
      {
        std::lock_guard<std::mutex> lock(results_mutex_);
        posted = wakes_posted_;
      }
      if (wakes_seen_ >= posted) break;
      arrived_.clear();
      co_await arrived_.wait();
    }
    take_results();
    // Ordered: anything still held goes out in order (nothing can be missing now).
    std::map<std::uint64_t, http::fetch_result> rest;
    for (auto& [index, r] : held_) rest.emplace(index, std::move(r));
    for (auto& [index, r] : rest) out_.add(r);
    held_.clear();
    http::fetch_statistics total;
    for (auto& w : workers_) total.merge(w->stats);
    if (error_) std::rethrow_exception(error_);
    co_return total;
  }

  // From the main loop: stops every loop's fetcher (the first reason wins
  // on each).
  void stop(const std::string& reason) {
    stopping_ = true;
    room_.set();
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      worker* w = workers_[i].get();
      group_->loop(i).call_soon_threadsafe([w, reason] {
        if (w->engine) {
          w->engine->stop(reason);
        } else if (w->early_stop.empty()) {
          w->early_stop = reason;
        }
      });
    }
  }

  // For the progress line (main loop).
  [[nodiscard]] progress_counts counts() const {
    progress_counts c;
    c.ok = ok_;
    c.failed = failed_;
    c.read = handed_;
    c.in_flight = static_cast<std::size_t>(handed_ - ok_ - failed_);
    c.input_done = source_done_;
    return c;
  }

  // After run(): every loop's client, added up; stalls of all loops.
  [[nodiscard]] http::client_statistics client_statistics() const {
    http::client_statistics t;
    for (const auto& w : workers_) {
      t.created += w->client.created;
      t.reused += w->client.reused;
      t.requests += w->client.requests;
      t.failed += w->client.failed;
    }
    return t;
  }
  // "12 40 ...": the inputs each loop took.
  [[nodiscard]] std::string inputs_per_loop() const {
    std::string text;
    for (const auto& w : workers_) {
      if (!text.empty()) text.append(" ");
      text.append(std::to_string(w->stats.read));
    }
    return text;
  }
  [[nodiscard]] std::uint64_t stalls() const {
    std::uint64_t n = 0;
    for (const auto& w : workers_) n += w->loop_stats.stalls;
    return n;
  }
  [[nodiscard]] duration longest_stall() const {
    duration d{};
    for (const auto& w : workers_) d = std::max(d, w->loop_stats.longest_stall);
    return d;
  }

 private:
  // A loop's fetcher and what it reports. `engine`, `early_stop` and the
  // reports are touched on the worker's loop while it runs, then read on
  // the main loop once run_on_loop() has its answer.
  struct worker {
    http::fetch_options opts;
    std::optional<http::fetcher> engine;
    std::string early_stop;  // a stop that came before the engine was made
    http::fetch_statistics stats;
    http::client_statistics client;
    loop_statistics loop_stats;
  };

  // A loop's source: batches from the main loop's distributor.
  class loop_source final : public http::fetch_source {
   public:
    loop_source(impl& f, worker& w) : f_(f), w_(w) {}
    task<bool> next(std::vector<http::fetch_input>& out, std::size_t max) override {
      const bool stopping = w_.engine && w_.engine->stopping();
      // At most half the loop's window at a time (and at most 64): the
      // inputs go to the loops with room, and no loop hoards them.
      const std::size_t batch =
          std::clamp<std::size_t>(w_.opts.concurrency / 2, 1, std::min<std::size_t>(max, 64));
      impl* f = &f_;
      std::vector<http::fetch_input>* into = &out;
      auto make = [f, into, batch, stopping]() { return f->hand_out(*into, batch, stopping); };
      auto asking = submit_to(f_.main_portal_, std::move(make), "fetch-hand-out");
      co_return co_await std::move(asking);
    }
    [[nodiscard]] bool finite() const noexcept override { return f_.source_.finite(); }

   private:
    impl& f_;
    worker& w_;
  };

  // A loop's sink: the results of a turn of the loop are gathered, then
  // passed to the main loop together (one lock, at most one wake), once
  // the loop's ready tasks have run.
  class loop_sink final : public http::fetch_sink {
   public:
    explicit loop_sink(impl& f) : f_(f) {}
    void deliver(http::fetch_result&& r) override {
      batch_.push_back(std::move(r));
      pending_.set();
    }
    // The batch to the main loop.
    void pass_on() {
      if (!batch_.empty()) f_.queue_results(batch_);
      batch_.clear();
    }
    task<void> passer() {
      for (;;) {
        co_await pending_.wait();
        pending_.clear();
        co_await yield();  // the other results of this turn join the batch
        pass_on();
      }
    }

   private:
    impl& f_;
    std::vector<http::fetch_result> batch_;
    event pending_{"fetch loop results"};
  };

  // On loop i: its fetcher, from start to its last result.
  task<void> run_worker(worker& w) {
    w.engine.emplace(w.opts);  // (its client is made on this loop's thread)
    if (!w.early_stop.empty()) w.engine->stop(w.early_stop);
    loop_source src(*this, w);
    loop_sink snk(*this);
    join_handle<void> passing = event_loop::current()->spawn(snk.passer(), "fetch-loop-results");
    std::exception_ptr failure;
    try {
      w.stats = co_await w.engine->run(src, snk);
    } catch (...) {
      failure = std::current_exception();
      w.stats = w.engine->statistics();
    }
    passing.cancel();
    std::exception_ptr passed;
    try {
      co_await passing;
    } catch (...) {
      passed = std::current_exception();  // (cancelled)
    }
    snk.pass_on();  // what is left
    w.client = w.engine->http_client().statistics();
    w.engine.reset();
    w.loop_stats = event_loop::current()->statistics();
    if (failure) std::rethrow_exception(failure);
  }

  // On the main loop: runs worker i on its loop and waits, not blocking.
  task<void> run_on_loop(std::size_t i) {
    worker* w = workers_[i].get();
    auto make = [this, w]() { return run_worker(*w); };
    auto running = submit_to(group_->portal(i), std::move(make), "fetch-loop");
    co_await std::move(running);
  }

  // On the main loop: the next inputs for a loop. One read of the source
  // at a time; with --ordered, no input is handed out more than
  // reorder_limit ahead of the oldest without its result (unless stopping).
  task<bool> hand_out(std::vector<http::fetch_input>& out, std::size_t max, bool stopping) {
    auto guard_wait = reading_.scoped_lock();
    semaphore_permit guard = co_await std::move(guard_wait);
    if (source_done_) co_return false;
    std::size_t take = max;
    if (o_.ordered) {
      while (!stopping && !stopping_ && order_.size() >= reorder_limit_) {
        room_.clear();
        co_await room_.wait();
      }
      if (!stopping && !stopping_) take = std::min(max, reorder_limit_ - order_.size());
    }
    const std::size_t before = out.size();
    auto reading = source_.next(out, take);
    const bool more = co_await std::move(reading);
    handed_ += out.size() - before;
    if (o_.ordered)
      for (std::size_t k = before; k < out.size(); ++k) order_.push_back(out[k].index);
    if (!more) source_done_ = true;
    co_return more;
  }

  // On any worker loop: a batch of results for the main loop.
  void queue_results(std::vector<http::fetch_result>& batch) {
    bool wake = false;
    {
      std::lock_guard<std::mutex> lock(results_mutex_);
      for (http::fetch_result& r : batch) results_.push_back(std::move(r));
      wake = !wake_posted_;
      wake_posted_ = true;
      if (wake) ++wakes_posted_;
    }
    if (wake) {
      main_.call_soon_threadsafe([this] {
        ++wakes_seen_;
        arrived_.set();
      });
    }
  }

  // On the main loop: the queued results to the writer (in input order
  // with --ordered).
  void take_results() {
    std::vector<http::fetch_result> got;
    {
      std::lock_guard<std::mutex> lock(results_mutex_);
      got.swap(results_);
      wake_posted_ = false;
    }
    for (http::fetch_result& r : got) {
      if (r.ok) {
        ++ok_;
      } else {
        ++failed_;
      }
      if (!o_.ordered) {
        out_.add(r);
        continue;
      }
      held_.emplace(r.index, std::move(r));
    }
    if (!o_.ordered || got.empty()) return;
    bool moved = false;
    while (!order_.empty()) {
      auto it = held_.find(order_.front());
      if (it == held_.end()) break;
      out_.add(it->second);
      held_.erase(it);
      order_.pop_front();
      moved = true;
    }
    if (moved) room_.set();
  }

  task<void> drain_results() {
    for (;;) {
      arrived_.clear();
      take_results();
      co_await arrived_.wait();
    }
  }

  // At the deadline (each fetcher has its own), handing out stops waiting
  // for reorder room: the loops read the rest, each input cancelled.
  task<void> deadline_timer() {
    co_await sleep_for(o_.deadline);
    stopping_ = true;
    room_.set();
  }

  const fetch_options& o_;
  event_loop& main_;
  portal main_portal_;
  cli_source& source_;
  result_writer& out_;
  std::vector<std::unique_ptr<worker>> workers_;
  std::unique_ptr<loop_group> group_;

  // Main loop only.
  mutex reading_;
  bool source_done_ = false;
  bool stopping_ = false;
  std::uint64_t handed_ = 0, ok_ = 0, failed_ = 0;
  std::deque<std::uint64_t> order_;  // --ordered: indexes handed out, without their result written
  std::unordered_map<std::uint64_t, http::fetch_result> held_;
  std::size_t reorder_limit_ = 0;
  event room_{"fetch reorder room"};
  event arrived_{"fetch results arrived"};
  std::uint64_t wakes_seen_ = 0;
  std::exception_ptr error_;

  // Any thread.
  std::mutex results_mutex_;
  std::vector<http::fetch_result> results_;
  bool wake_posted_ = false;
  std::uint64_t wakes_posted_ = 0;
};

loop_fetch::loop_fetch(const fetch_options& o, event_loop& main, cli_source& source, result_writer& out,
                       const http::fetch_options& engine_opts)
    : impl_(std::make_unique<impl>(o, main, source, out, engine_opts)) {}
loop_fetch::~loop_fetch() = default;
task<http::fetch_statistics> loop_fetch::run() { return impl_->run(); }
void loop_fetch::stop(const std::string& reason) { impl_->stop(reason); }
progress_counts loop_fetch::counts() const { return impl_->counts(); }
http::client_statistics loop_fetch::client_statistics() const { return impl_->client_statistics(); }
std::string loop_fetch::inputs_per_loop() const { return impl_->inputs_per_loop(); }
std::uint64_t loop_fetch::stalls() const { return impl_->stalls(); }
duration loop_fetch::longest_stall() const { return impl_->longest_stall(); }

}  // namespace spindle::cli
