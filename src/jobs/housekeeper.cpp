#include "jobs/housekeeper.h"

#include <spdlog/spdlog.h>

#include "config/settings.h"
#include "jobs/idempotency_index.h"
#include "jobs/job_store.h"

namespace da {

Housekeeper::Housekeeper(const Settings& settings, JobStore& store, IdempotencyIndex* idempotency,
                         std::chrono::milliseconds interval)
    : settings_(settings), store_(store), idempotency_(idempotency), interval_(interval) {}

Housekeeper::~Housekeeper() { stop(); }

void Housekeeper::start() {
  thread_ = std::thread([this] {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      lock.unlock();
      runOnce();
      lock.lock();
      wake_.wait_for(lock, interval_, [this] { return stopping_; });
    }
  });
}

void Housekeeper::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Housekeeper::runOnce() {
  try {
    const size_t removed = store_.enforceRetention(settings_.retention_age, settings_.retention_bytes);
    if (removed) spdlog::info("retention: removed {} finished deploy(s)", removed);
    if (idempotency_) {
      if (const size_t expired = idempotency_->expire()) spdlog::info("idempotency: {} key(s) expired", expired);
    }
  } catch (const std::exception& e) {
    spdlog::error("housekeeping failed: {}", e.what());
  }
}

}  // namespace da
