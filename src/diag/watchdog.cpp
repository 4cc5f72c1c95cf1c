// The stall watchdog's monitor.
//
// The watchdog is the loop's default step observer (spindle/step_hook.hpp):
// a static initializer below installs its factory in the core, and every
// loop whose options ask for a threshold gets one watchdog_observer.
//
// Protocol (per watched loop, see step_slot and detail::watch_state):
// - The loop, per step: when the running task changes, what runs (task id,
//   spawn location: relaxed stores); then seq = S (release). After the
//   step, if flagged_seq == S it calls the observer, which reports the end
//   (the loop knows the task's name and the exact end) and sets
//   acked_seq = S. After a batch:
//   seq = S|idle. That is one store and one load per step, plus two stores
//   when the task changes.
// - The monitor, per tick: reads seq. A new value, or idle, restarts the
//   count (first_seen = now). The same busy value for `threshold` is a
//   stall: it reads what runs (seq, the fields, an acquire fence, seq again:
//   a step that ends at that instant is skipped; the fields are written
//   before seq, so on x86 (TSO) a report never names the wrong step — on a
//   weakly ordered CPU it could, in a window of a few instructions),
//   reports `ongoing`, and sets flagged_seq = S. If seq then moves on and the
//   loop did not ack (it passed its check just before the flag was set), the
//   monitor reports the end itself, from its own ticks.
// No clock read and no syscall is added to the loop's steps.

#include "spindle/watchdog.hpp"

#include "spindle/diagnostics.hpp"

#include <pthread.h>
#include <algorithm>

#include <cstdio>
#include <utility>

namespace spindle {

namespace {

std::string basename_of(const char* path) {
  if (path == nullptr) return "?";
  std::string s(path);
  auto slash = s.find_last_of('/');
  return slash == std::string::npos ? s : s.substr(slash + 1);
}

void deliver(const stall_report& r, const stall_handler& h) noexcept {
  if (h) {
    try {
      h(r);
      return;
    } catch (...) {  // a throwing sink must not take the monitor down: fall back
    }
  }
  std::string line = r.to_string();
  line += '\n';
  std::fputs(line.c_str(), stderr);
}

}  // namespace

std::string stall_report::to_string() const {
  std::string s = "spindle: stall loop=" + loop;
  s += state == phase::ongoing ? " state=ongoing" : " state=ended";
  s += " held_ms=" + std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(held).count());
  if (task_id == 0) {
    s += " task=(callback)";
  } else {
    s += " task=";
    if (task.empty()) {
      s += '#';  // (not "#" + to_string: g++ 12 -Wrestrict false positive)
      s += std::to_string(task_id);
    } else {
      s += task;
    }
  }
  if (where.file_name() != nullptr && where.file_name()[0] != '\0') {
    s += " spawned=" + basename_of(where.file_name()) + ":" + std::to_string(where.line());
    if (where.function_name() != nullptr && where.function_name()[0] != '\0') {
      s += " (";
      s += readable_function_name(where.function_name());
      s += ")";
    }
  }
  return s;
}

stall_monitor::stall_monitor(spindle::clock& c) : clock_(&c), threaded_(false) {}

stall_monitor::stall_monitor() : clock_(nullptr), threaded_(true) {
  std::thread([this] { run_thread(); }).detach();
}

stall_monitor::~stall_monitor() = default;

stall_monitor& stall_monitor::shared() {
  // Never destroyed: its detached thread may tick during static destruction.
  static stall_monitor* monitor = new stall_monitor();
  return *monitor;
}

time_point stall_monitor::now() const noexcept {
  return clock_ != nullptr ? clock_->now() : steady_clock{}.now();
}

void stall_monitor::watch(detail::watch_state* slot) {
  std::lock_guard lock(mutex_);
  slot->last_seq = slot->slot->seq.load(std::memory_order_acquire);
  slot->first_seen = now().time_since_epoch().count();
  slot->reported = false;
  slots_.push_back(slot);
  if (threaded_) wake_.notify_one();
}

void stall_monitor::unwatch(detail::watch_state* slot) noexcept {
  std::lock_guard lock(mutex_);
  std::erase(slots_, slot);
}

void stall_monitor::run_thread() {
  {
    std::string name = "spindle-watch";
    pthread_setname_np(pthread_self(), name.c_str());
  }
  std::unique_lock lock(mutex_);
  for (;;) {
    if (slots_.empty()) {
      wake_.wait(lock);
      continue;
    }
    duration shortest = slots_.front()->threshold;
    for (auto* s : slots_) shortest = std::min(shortest, s->threshold);
    const duration period =
        std::clamp<duration>(shortest / 8, std::chrono::milliseconds(1), std::chrono::milliseconds(50));
    wake_.wait_for(lock, period);
    lock.unlock();
    tick();
    lock.lock();
  }
}

void stall_monitor::tick() {
  std::vector<std::pair<stall_report, stall_handler>> out;
  {
    std::lock_guard lock(mutex_);
    const std::int64_t now_ns = now().time_since_epoch().count();
    for (detail::watch_state* slot : slots_) {
      step_slot& loop = *slot->slot;
      const std::uint64_t s = loop.seq.load(std::memory_order_acquire);
      const bool busy = (s & step_slot::idle_bit) == 0;
      if (s != slot->last_seq || !busy) {
        if (slot->reported && slot->acked_seq.load(std::memory_order_acquire) != slot->last_seq) {
          stall_report end = slot->last_report;
          end.state = stall_report::phase::ended;
          end.held = duration(now_ns - slot->first_seen);
          out.emplace_back(std::move(end), slot->handler);
        }
        slot->last_seq = s;
        slot->first_seen = now_ns;
        slot->reported = false;
        continue;
      }
      if (slot->reported || duration(now_ns - slot->first_seen) < slot->threshold) continue;
      // A seqlock read of what is running.
      stall_report r;
      r.state = stall_report::phase::ongoing;
      r.loop = slot->loop_name;
      r.task_id = loop.task_id.load(std::memory_order_relaxed);
      const std::source_location where = loop.where.load(std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (loop.seq.load(std::memory_order_relaxed) != s) continue;  // it just ended: next tick restarts
      r.where = where;
      r.held = duration(now_ns - slot->first_seen);
      slot->reported = true;
      slot->last_report = r;
      slot->stall_start.store(slot->first_seen, std::memory_order_relaxed);
      loop.flagged_seq.store(s, std::memory_order_release);
      out.emplace_back(std::move(r), slot->handler);
    }
  }
  for (auto& [report, handler] : out) deliver(report, handler);
}

namespace {

// One loop's watchdog: the step observer the core calls at run start and
// stop, and after a step the monitor flagged.
class watchdog_observer final : public step_observer {
 public:
  watchdog_observer(std::string_view loop_name, const step_watch_options& o)
      : monitor_(o.monitor != nullptr ? o.monitor : &stall_monitor::shared()) {
    state_.loop_name = std::string(loop_name);
    state_.threshold = std::max(o.threshold.value_or(duration::zero()), duration::zero());
    state_.handler = o.on_stall;
  }

  void attach(step_slot& slot, std::string_view loop_name) override {
    state_.slot = &slot;
    state_.loop_name = std::string(loop_name);
    monitor_->watch(&state_);
  }

  void detach(step_slot& /*slot*/) noexcept override { monitor_->unwatch(&state_); }

  std::optional<duration> on_flagged_step_end(step_slot& /*slot*/, flagged_step step) noexcept override {
    stall_report r;
    r.state = stall_report::phase::ended;
    r.task_id = step.task_id;
    r.where = step.where;
    r.held = duration(monitor_->now().time_since_epoch().count() -
                      state_.stall_start.load(std::memory_order_relaxed));
    state_.acked_seq.store(step.seq, std::memory_order_release);
    try {
      r.loop = state_.loop_name;
      r.task = std::move(step.task_name);
    } catch (...) {
    }
    const duration held = r.held;
    deliver(r, state_.handler);
    return held;
  }

 private:
  stall_monitor* monitor_;
  detail::watch_state state_;
};

std::shared_ptr<step_observer> make_watchdog(std::string_view loop_name, const step_watch_options& o) {
  if (!o.threshold) return nullptr;
  return std::make_shared<watchdog_observer>(loop_name, o);
}

// Installs the watchdog as every loop's default step observer. Nothing
// calls into this object file, so spindle::spindle makes the linker pull it
// with `--undefined=spindle_diag_watchdog_anchor` (src/CMakeLists.txt), in
// the build tree and in an installed package alike.
[[maybe_unused]] const bool installed = [] {
  detail::set_default_step_observer(&make_watchdog);
  return true;
}();

}  // namespace

}  // namespace spindle

// The single-declaration form gives the const external linkage (in braces
// it would be internal, and --undefined would find nothing to pull).
extern "C" [[gnu::used]] const int spindle_diag_watchdog_anchor = 1;
