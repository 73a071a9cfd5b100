#include "jobs/deployment_locks.h"

#include <chrono>

namespace da {

std::optional<DeploymentLocks::Held> DeploymentLocks::acquire(const std::string& deployment,
                                                               const std::atomic<bool>& cancel) {
  std::unique_lock lock(mutex_);
  // The cancel flag is not tied to this condition variable, so it is re-checked often.
  ++waiting_;
  while (held_.count(deployment) && !cancel) {
    released_.wait_for(lock, std::chrono::milliseconds(100));
  }
  --waiting_;
  if (cancel) return std::nullopt;
  held_.insert(deployment);
  return Held(*this, deployment);
}

size_t DeploymentLocks::waiting() const {
  std::lock_guard lock(mutex_);
  return waiting_;
}

void DeploymentLocks::release(const std::string& deployment) {
  {
    std::lock_guard lock(mutex_);
    held_.erase(deployment);
  }
  released_.notify_all();
}

}  // namespace da
