// loop_group: N background loops, optionally pinned, stopped together.

#include "spindle/loop_group.hpp"

#include <pthread.h>
#include <sched.h>

#include <cstdio>
#include <thread>

#include "doors.hpp"
#include "spindle/error.hpp"

namespace spindle {

namespace {

// The CPUs this process may run on, in order.
std::vector<int> allowed_cpus() {
  std::vector<int> cpus;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) {
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

}  // namespace

std::uint64_t group_shutdown_report::cancelled() const noexcept {
  std::uint64_t n = 0;
  for (const auto& l : loops) n += l.cancelled;
  return n;
}

bool group_shutdown_report::clean() const noexcept {
  for (const auto& l : loops)
    if (!l.clean()) return false;
  return true;
}

std::string group_shutdown_report::to_string() const {
  std::string s;
  for (const auto& l : loops) s += (s.empty() ? "" : " | ") + l.to_string();
  return s;
}

loop_group::loop_group(loop_group_options opts) {
  const std::vector<int> cpus = allowed_cpus();
  std::size_t n = opts.loops;
  if (n == 0) n = cpus.empty() ? std::max(1u, std::thread::hardware_concurrency()) : cpus.size();
  loops_.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    background_loop_options bo;
    bo.loop = opts.loop;
    bo.loop.name = opts.name + "-" + std::to_string(i);
    bo.on_diagnostic = opts.on_diagnostic;
    int cpu = -1;
    if (opts.pin && !cpus.empty()) {
      cpu = cpus[i % cpus.size()];
      bo.on_thread_start = [cpu] {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        if (const int e = ::pthread_setaffinity_np(::pthread_self(), sizeof one, &one); e != 0)
          throw system_error("pthread_setaffinity_np(cpu " + std::to_string(cpu) + ")", e);
      };
    }
    cpus_.push_back(cpu);
    loops_.push_back(std::make_unique<background_loop>(std::move(bo)));  // (a failure stops those made)
  }
}

loop_group::~loop_group() {
  detail::join_all(stoppers_mutex_, stoppers_);  // a stop_async() under way ends first
  if (stopped_) return;
  group_shutdown_report r = stop_joining();
  bool lost = false;
  for (const auto& l : r.loops) {
    lost = lost || !l.abandoned_tasks.empty();
    for (const auto& p : l.pools) lost = lost || p.cancelled + p.abandoned != 0;
  }
  if (lost) std::fprintf(stderr, "spindle: loop_group destroyed without stop(): %s\n", r.to_string().c_str());
}

spindle::portal loop_group::portal(std::size_t i) const {
  if (i >= loops_.size()) throw usage_error("loop_group::portal(" + std::to_string(i) + "): out of range");
  return loops_[i]->portal();
}

event_loop& loop_group::loop(std::size_t i) {
  if (i >= loops_.size()) throw usage_error("loop_group::loop(" + std::to_string(i) + "): out of range");
  return loops_[i]->loop();
}

int loop_group::cpu(std::size_t i) const { return i < cpus_.size() ? cpus_[i] : -1; }

group_shutdown_report loop_group::stop() {
  if (stopped_) return report_;
  bool own_thread = false;
  for (const auto& l : loops_) own_thread = own_thread || std::this_thread::get_id() == l->thread_id();
  if (!own_thread)
    detail::refuse_any_loop_thread("loop_group::stop", "the group's loops stop (up to their shutdown grace)",
                                   "co_await stop_async()");
  return stop_joining();
}

task<group_shutdown_report> loop_group::stop_async() {
  if (stopped_) co_return report_;
  for (const auto& l : loops_)
    if (std::this_thread::get_id() == l->thread_id())
      throw wrong_thread_error("loop_group::stop_async awaited on the thread of loop '" + l->loop().name() +
                               "', one of the group's own: it would wait for itself");
  co_await detail::run_on_new_thread([this] { (void)stop_joining(); }, stoppers_mutex_, stoppers_,
                                     "loop_group::stop_async");
  co_return report_;
}

group_shutdown_report loop_group::stop_joining() {
  std::lock_guard lock(stop_mutex_);  // stop_async() callers on several loops: one stops, all get the report
  if (stopped_) return report_;
  for (const auto& l : loops_)
    if (std::this_thread::get_id() == l->thread_id())
      throw wrong_thread_error("loop_group::stop called on the thread of loop '" + l->loop().name() +
                               "': it would join itself; call it from another thread");
  // In parallel: each loop's shutdown grace runs at the same time.
  std::vector<std::thread> stopping;
  std::vector<loop_shutdown_report> reports(loops_.size());
  for (std::size_t i = 0; i < loops_.size(); ++i)
    stopping.emplace_back([this, i, &reports] { reports[i] = loops_[i]->stop(); });
  for (auto& t : stopping) t.join();
  report_.loops = std::move(reports);
  stopped_ = true;
  return report_;
}

}  // namespace spindle
