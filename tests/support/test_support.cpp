#include "support/test_support.hpp"

#include "spindle/sleep.hpp"

#include <dirent.h>
#include <pthread.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <stdexcept>

namespace spindle::test {

task<void> sleep_counting_cancellation(int& cancelled, duration d) {
  try {
    co_await sleep_for(d);
  } catch (const cancelled_error&) {
    ++cancelled;
    throw;
  }
}

diagnostic_log::diagnostic_log(event_loop& loop) : loop_(loop) {
  loop.set_diagnostic_handler([this](const diagnostic& d) {
    std::lock_guard lock(mutex_);
    entries_.push_back(d);
  });
}

diagnostic_log::~diagnostic_log() { loop_.set_diagnostic_handler({}); }

std::vector<diagnostic> diagnostic_log::entries() const {
  std::lock_guard lock(mutex_);
  return entries_;
}

std::size_t diagnostic_log::count(diagnostic::kind k) const {
  std::lock_guard lock(mutex_);
  std::size_t n = 0;
  for (const auto& d : entries_) n += d.what == k ? 1 : 0;
  return n;
}

namespace {
struct small_stack_job {
  const std::function<void()>* fn;
  std::exception_ptr error;
};
void* small_stack_entry(void* arg) {
  auto* job = static_cast<small_stack_job*>(arg);
  try {
    (*job->fn)();
  } catch (...) {
    job->error = std::current_exception();
  }
  return nullptr;
}
}  // namespace

void run_on_small_stack(std::size_t stack_bytes, const std::function<void()>& fn) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, stack_bytes);
  small_stack_job job{&fn, nullptr};
  pthread_t thread;
  if (pthread_create(&thread, &attr, &small_stack_entry, &job) != 0) {
    pthread_attr_destroy(&attr);
    throw std::runtime_error("pthread_create failed");
  }
  pthread_attr_destroy(&attr);
  pthread_join(thread, nullptr);
  if (job.error) std::rethrow_exception(job.error);
}

std::size_t open_fd_count() {
  // Files under /proc are not counted: this listing's own directory, and
  // what sanitizer runtimes and other threads read there for a moment
  // (/proc/self/maps, statm), which made a count taken at the wrong
  // instant 2 too high.
  std::size_t n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    const int own = dirfd(d);
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      const int fd = std::atoi(e->d_name);
      if (fd == own) continue;
      char target[256];
      const std::string link = std::string("/proc/self/fd/") + e->d_name;
      const ssize_t len = ::readlink(link.c_str(), target, sizeof target - 1);
      if (len > 0) {
        target[len] = '\0';
        if (std::strncmp(target, "/proc/", 6) == 0) continue;
      }
      ++n;
    }
    closedir(d);
  }
  return n;
}

}  // namespace spindle::test
