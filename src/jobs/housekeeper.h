// Keeps the state directory bounded: finished jobs past their age or over the disk budget
// (JobStore::enforceRetention) and expired Idempotency-Keys go, at start-up and then every
// `interval`, in one thread of its own.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace da {

struct Settings;
class JobStore;
class IdempotencyIndex;

class Housekeeper {
 public:
  Housekeeper(const Settings& settings, JobStore& store, IdempotencyIndex* idempotency,
              std::chrono::milliseconds interval = std::chrono::minutes(5));
  ~Housekeeper();
  Housekeeper(const Housekeeper&) = delete;
  Housekeeper& operator=(const Housekeeper&) = delete;

  void start();
  void stop();
  // One round, in the calling thread.
  void runOnce();

 private:
  const Settings& settings_;
  JobStore& store_;
  IdempotencyIndex* idempotency_;
  std::chrono::milliseconds interval_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace da
