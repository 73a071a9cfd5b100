// One push at a time per deployment. Two pushes racing on one deployment end with the
// loser's schema wait answering raceDetected (which `dev --once` reports with exit 0), so
// the agent lets installs run side by side and serialises only the push.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <set>
#include <string>

namespace da {

class DeploymentLocks {
 public:
  class Held {
   public:
    Held(DeploymentLocks& owner, std::string name) : owner_(&owner), name_(std::move(name)) {}
    Held(Held&& other) noexcept : owner_(other.owner_), name_(std::move(other.name_)) { other.owner_ = nullptr; }
    Held(const Held&) = delete;
    Held& operator=(const Held&) = delete;
    Held& operator=(Held&&) = delete;
    ~Held() {
      if (owner_) owner_->release(name_);
    }

   private:
    DeploymentLocks* owner_;
    std::string name_;
  };

  // Blocks until no other push holds `deployment`; nullopt when `cancel` is raised first.
  std::optional<Held> acquire(const std::string& deployment, const std::atomic<bool>& cancel);

  // Pushes blocked in acquire() right now (for diagnostics and tests).
  size_t waiting() const;

 private:
  void release(const std::string& deployment);

  mutable std::mutex mutex_;
  std::condition_variable released_;
  std::set<std::string> held_;
  size_t waiting_ = 0;
};

}  // namespace da
