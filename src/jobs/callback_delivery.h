// Webhooks: a job that gave `callback_url` has its final report POSTed there once it finishes,
// signed, and retried with backoff until the receiver answers 2xx, refuses for good (a 4xx
// other than 408 and 429, a redirect), or the attempts run out. Every attempt is recorded in the
// job's report (`callback`), which is also what makes delivery survive a restart: start()
// resumes every finished job whose callback is still pending.
//
// The signature (docs/design.md, "Webhooks"): header
//   Deploy-Agent-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
// made afresh for every attempt, so a receiver can refuse old timestamps (replays) and still
// accept a late retry. Deploy-Agent-Delivery (the job id) is the same on every attempt: a
// receiver that saw it before has the report already.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "config/settings.h"
#include "jobs/job_store.h"

namespace da {

// Whether `url` may be a callback under `settings`: http(s), no user info, and its host:port
// listed in allowed_hosts. nullopt when allowed; otherwise why not, in words for a problem's
// detail (the URL itself is not repeated).
std::optional<std::string> callbackUrlRefusal(const std::string& url, const CallbackSettings& settings);

// The value of Deploy-Agent-Signature for `body` sent at `unix_seconds`.
std::string callbackSignature(const std::string& secret, int64_t unix_seconds, const std::string& body);

class CallbackDelivery {
 public:
  struct Answer {
    int http_status = 0;   // 0: no answer
    bool delivered = false;
    bool retryable = false;
    std::string outcome;   // "HTTP 503", "network: Connection refused"
  };
  // Sends one attempt; tests may pass their own. Default: convex::postWebhook through the
  // agent's passed-through proxy settings, with settings.callbacks.timeout.
  using Post = std::function<Answer(const std::string& url, const std::vector<std::pair<std::string, std::string>>& headers,
                                    const std::string& body, const std::atomic<bool>& stopping)>;

  // Told after each recorded attempt what followed it: "delivered", "retrying" or "failed" (metrics).
  using AttemptObserver = std::function<void(const std::string& outcome)>;

  CallbackDelivery(const Settings& settings, JobStore& store, Post post = {});
  void onAttempt(AttemptObserver observer) { on_attempt_ = std::move(observer); }
  ~CallbackDelivery();

  // Resumes the pending callbacks of finished jobs (due now, or when their retry was due) and
  // starts the senders.
  void start();
  // Ends an attempt in flight (it is not recorded) and joins; pending callbacks stay pending
  // in their reports for the next start.
  void stop();
  // Waits (at most `timeout`) until no attempt is in flight and none is due now: lets a stopping
  // agent deliver the reports of the jobs it just finished. Retries due later are not waited for.
  void waitUntilIdle(std::chrono::milliseconds timeout);
  // A job finished: its callback, if it has one, is due now.
  void jobFinished(const DeployReport& report);

  // The wait after failed attempt number `attempt` (1-based): first_retry doubling, capped.
  static std::chrono::milliseconds retryDelay(const CallbackSettings& settings, int attempt);

 private:
  void send();
  void attempt(const std::string& job_id);
  void schedule(const std::string& job_id, std::chrono::steady_clock::time_point due);

  const Settings& settings_;
  JobStore& store_;
  Post post_;
  AttemptObserver on_attempt_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable idle_;
  size_t in_flight_ = 0;
  std::multimap<std::chrono::steady_clock::time_point, std::string> due_;
  std::atomic<bool> stopping_{false};
  std::vector<std::thread> senders_;
};

}  // namespace da
