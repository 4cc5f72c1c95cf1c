#include "spindle/semaphore.hpp"

namespace spindle {

task<semaphore_permit> semaphore::acquire_permit() {
  co_await acquire();
  co_return semaphore_permit(this);
}

semaphore& limiter::of(const std::string& key) {
  auto& slot = map_[key];
  if (!slot) slot = std::make_unique<semaphore>(per_key_, name_ + "[" + key + "]");
  return *slot;
}

task<semaphore_permit> limiter::acquire(const std::string& key) {
  co_return co_await of(key).acquire_permit();
}

}  // namespace spindle
