#include "spindle/detail/thread_name.hpp"

#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace spindle::detail {

int current_tid() noexcept {
  // Cached: gettid is a syscall and this runs on every wrong-thread check
  // only in the error path, but describe_*() may be called in loops by tests.
  thread_local int tid = static_cast<int>(::syscall(SYS_gettid));
  return tid;
}

std::string current_thread_name() {
  char buf[32] = {};
  if (pthread_getname_np(pthread_self(), buf, sizeof buf) != 0 || buf[0] == '\0') return "?";
  return buf;
}

std::string describe_current_thread() {
  return "thread " + std::to_string(current_tid()) + " (" + current_thread_name() + ")";
}

}  // namespace spindle::detail
