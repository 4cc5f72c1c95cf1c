// The loop's shutdown phase: run() returning, event_loop::shutdown(), the
// destructor. In order:
//   1. Mark the loop as shutting down: tasks spawned from now on never start.
//   2. Request cancellation of every live task.
//   3. Turn the loop until no task is alive or the grace period ends.
//   4. Report every task still alive as abandoned (it is left suspended: its
//      frame may be registered with code outside the loop's knowledge).
//   5. Shut down the attached participants (thread pools, portals), and put
//      the pools' accounts into the one combined report.

#include <algorithm>
#include <unordered_map>

#include "detail/loop_access.hpp"
#include "spindle/event_loop.hpp"

namespace spindle {

namespace {

// The report's count by name, bounded: the max_named_tasks most frequent
// names (ties by name), the rest summed under "(other names)".
void keep_most_frequent(const std::unordered_map<std::string, std::uint64_t>& all,
                        std::map<std::string, std::uint64_t>& out) {
  std::vector<std::pair<std::string, std::uint64_t>> v(all.begin(), all.end());
  std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  const std::size_t keep = std::min(v.size(), loop_shutdown_report::max_named_tasks);
  for (std::size_t i = 0; i < keep; ++i) out[v[i].first] = v[i].second;
  for (std::size_t i = keep; i < v.size(); ++i) out["(other names)"] += v[i].second;
}

}  // namespace

void event_loop::shutdown_tasks() {
  loop_shutdown_report r;
  r.loop = opts_.name;
  if (live_head_ != nullptr) {
    shutting_down_ = true;
    // A stop() that ended the main phase must not end the shutdown phase.
    stop_requested_.store(false, std::memory_order_relaxed);
    const loop_statistics before = stats_;
    std::unordered_map<std::string, std::uint64_t> by_name;  // (all names: shutdown only)
    for (detail::task_node* t = live_head_; t != nullptr; t = t->live_next) {
      ++r.cancelled;
      // Named, so "10 tasks left at exit" can be traced to code.
      std::string name = describe_task(t->name(), t->where());
      if (r.cancelled_tasks.size() < loop_shutdown_report::max_named_tasks) r.cancelled_tasks.push_back(name);
      ++by_name[std::move(name)];
      t->request_cancel();
    }
    keep_most_frequent(by_name, r.cancelled_by_name);
    const auto grace_end = saturating_add(std::chrono::steady_clock::now(), opts_.shutdown_grace);
    for (;;) {
      // (Compared before subtracting: grace_end may be near time_point::min().)
      const auto now = std::chrono::steady_clock::now();
      if (live_head_ == nullptr || grace_end <= now) break;
      const auto left = grace_end - now;
      run_once(std::chrono::duration_cast<std::chrono::nanoseconds>(left).count());
    }
    while (detail::task_node* t = live_head_) {
      report({diagnostic::kind::abandoned_task, opts_.name, t->name(), t->where(),
              "did not finish within the shutdown grace period after cancellation", nullptr});
      r.abandoned_tasks.push_back(describe_task(t->name(), t->where()));
      // Reported once, kept apart: a later shutdown does not wait for it again.
      detail::live_list_unlink(live_head_, t);
      detail::live_list_push(abandoned_head_, t);
      t->abandoned_ = true;
      --stats_.tasks_alive;
      ++stats_.tasks_abandoned;
    }
    // How the cancelled tasks (and any they spawned) ended during the grace.
    r.ended_cancelled = stats_.tasks_cancelled - before.tasks_cancelled;
    r.ended_failed = stats_.tasks_failed - before.tasks_failed;
    r.ended_completed = stats_.tasks_completed - before.tasks_completed;
    shutting_down_ = false;
  }
  // Then the attached pools: their awaiting tasks are gone, so what is still
  // queued or running belongs to nobody on this loop (or to other loops).
  std::vector<std::weak_ptr<shutdown_participant>> attached;
  {
    std::lock_guard lock(attached_mutex_);
    attached.swap(attached_);
  }
  for (auto& weak : attached) {
    if (auto p = weak.lock()) {
      if (auto pool = p->shutdown_for_loop()) r.pools.push_back(std::move(*pool));
    }
  }
  last_shutdown_ = std::move(r);
}

void event_loop::attach_shutdown_participant(std::weak_ptr<shutdown_participant> p) {
  std::lock_guard lock(attached_mutex_);
  std::erase_if(attached_, [](const auto& w) { return w.expired(); });
  attached_.push_back(std::move(p));
}

loop_shutdown_report event_loop::shutdown() {
  enter_run("shutdown");
  detail::leave_run_guard guard{this};
  shutdown_tasks();
  return last_shutdown_;
}

bool loop_shutdown_report::clean() const noexcept {
  if (cancelled != 0 || !abandoned_tasks.empty()) return false;
  for (const auto& p : pools)
    if (p.cancelled + p.abandoned + p.failed != 0) return false;
  return true;
}

std::string loop_shutdown_report::to_string() const {
  std::string s = "loop=" + loop + " cancelled=" + std::to_string(cancelled) +
                  " ended_cancelled=" + std::to_string(ended_cancelled) +
                  " ended_failed=" + std::to_string(ended_failed) +
                  " ended_completed=" + std::to_string(ended_completed) +
                  " abandoned=" + std::to_string(abandoned_tasks.size());
  if (!cancelled_by_name.empty()) {
    // The ten most frequent names, most first (ties by name).
    std::vector<std::pair<std::string, std::uint64_t>> top(cancelled_by_name.begin(),
                                                           cancelled_by_name.end());
    std::stable_sort(top.begin(), top.end(),
                     [](const auto& a, const auto& b) { return a.second > b.second; });
    s += " cancelled_tasks=[";
    for (std::size_t i = 0; i < top.size() && i < 10; ++i) {
      if (i != 0) s += ",";
      s += top[i].first + " (" + std::to_string(top[i].second) + ")";
    }
    if (top.size() > 10) s += ",... " + std::to_string(top.size() - 10) + " more names";
    s += "]";
  }
  if (!abandoned_tasks.empty()) {
    s += " abandoned_tasks=[";
    for (std::size_t i = 0; i < abandoned_tasks.size(); ++i) {
      if (i != 0) s += ",";
      s += abandoned_tasks[i];
    }
    s += "]";
  }
  for (const auto& p : pools) s += "; " + p.to_string();
  return s;
}

std::string shutdown_report::to_string() const {
  std::string s = "pool=" + name + " submitted=" + std::to_string(submitted) +
                  " completed=" + std::to_string(completed) + " failed=" + std::to_string(failed) +
                  " cancelled=" + std::to_string(cancelled) + " abandoned=" + std::to_string(abandoned);
  if (still_running != 0) s += " still_running=" + std::to_string(still_running);
  auto list = [&](const char* what, const std::vector<std::string>& names) {
    if (names.empty()) return;
    s += std::string(" ") + what + "=[";
    for (std::size_t i = 0; i < names.size(); ++i) s += (i ? "," : "") + names[i];
    s += "]";
  };
  list("cancelled_jobs", cancelled_jobs);
  list("abandoned_jobs", abandoned_jobs);
  return s;
}

}  // namespace spindle
