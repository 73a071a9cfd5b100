// When and how long the agent's HTTP calls (Management API, deployment API) wait before trying
// again. The policy is plain data plus three injectable sources (randomness, sleeping and the
// clock) so tests decide every delay without sleeping for real.
//
// What is retried is decided by the caller (management_client.cpp): network errors, 429, 500,
// 502, 503 and 504, never another 4xx; non-idempotent calls only while nothing can have reached
// the server.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <string_view>

namespace da::convex {

enum class Jitter {
  kNone,          // exactly the exponential step: base, 2*base, 4*base, ... (capped)
  kFull,          // uniform in [0, exponential step]
  kDecorrelated,  // uniform in [base, 3 * previous delay], capped (the "decorrelated jitter" scheme)
};

struct RetryPolicy {
  // Uniform in [0, 1). Empty: a per-thread Mersenne Twister seeded from std::random_device.
  using Random = std::function<double()>;
  // Waits `delay` unless `cancel` (may be null) turns true first; returns false when cancelled.
  // Empty: sleepUnlessCancelled below, which notices a cancel within ~10 ms.
  using Sleep = std::function<bool(std::chrono::milliseconds delay, const std::atomic<bool>* cancel)>;
  // The monotonic clock the budget is measured with. Empty: std::chrono::steady_clock.
  using Clock = std::function<std::chrono::steady_clock::time_point()>;
  // The wall clock an HTTP-date `Retry-After` is measured against. Empty: system_clock.
  using WallClock = std::function<std::chrono::system_clock::time_point()>;

  int max_attempts = 3;  // every attempt counts, the first included; < 1 is taken as 1
  std::chrono::milliseconds base_delay{250};
  std::chrono::milliseconds max_delay{8000};  // caps the backoff step, not a server's Retry-After
  // Time from the start of the call after which no further attempt begins: a wait that would end
  // past it is not started, and the last failure is reported instead. A `Retry-After` that does
  // not fit in what is left of the budget ends the call the same way (it is never shortened: the
  // server said when to come back).
  std::chrono::milliseconds total_budget{60000};
  Jitter jitter = Jitter::kFull;

  Random random;
  Sleep sleep;
  Clock clock;
  WallClock wall_clock;

  // Builder-style setters, e.g. RetryPolicy{}.withMaxAttempts(5).withJitter(Jitter::kNone).
  RetryPolicy& withMaxAttempts(int n) { max_attempts = n; return *this; }
  RetryPolicy& withBaseDelay(std::chrono::milliseconds d) { base_delay = d; return *this; }
  RetryPolicy& withMaxDelay(std::chrono::milliseconds d) { max_delay = d; return *this; }
  RetryPolicy& withTotalBudget(std::chrono::milliseconds d) { total_budget = d; return *this; }
  RetryPolicy& withJitter(Jitter j) { jitter = j; return *this; }
  RetryPolicy& withRandom(Random r) { random = std::move(r); return *this; }
  RetryPolicy& withSleep(Sleep s) { sleep = std::move(s); return *this; }
  RetryPolicy& withClock(Clock c) { clock = std::move(c); return *this; }
  RetryPolicy& withWallClock(WallClock c) { wall_clock = std::move(c); return *this; }

  // The injectables, or their defaults when empty.
  double draw() const;
  bool wait(std::chrono::milliseconds delay, const std::atomic<bool>* cancel) const;
  std::chrono::steady_clock::time_point now() const;
  std::chrono::system_clock::time_point wallNow() const;
  int attempts() const { return max_attempts < 1 ? 1 : max_attempts; }
};

// The wait before retry number `retry` (1: the wait after the first attempt). `previous` is the
// wait before the previous retry (0 for the first), which decorrelated jitter grows from.
// Never negative, never above max_delay (unless base_delay is above it: then base_delay).
std::chrono::milliseconds backoffDelay(const RetryPolicy& policy, int retry, std::chrono::milliseconds previous);

// A `Retry-After` value: delta-seconds ("120") or an HTTP-date (IMF-fixdate, RFC 850 or asctime
// form), as a wait from `now` (a date in the past: 0). Anything else: nullopt.
std::optional<std::chrono::milliseconds> parseRetryAfter(std::string_view value,
                                                         std::chrono::system_clock::time_point now);

// The statuses worth another attempt: 429, 500, 502, 503, 504.
bool isRetryableStatus(int status);

// Sleeps `delay` in slices of at most 10 ms, returning false as soon as `cancel` is true.
bool sleepUnlessCancelled(std::chrono::milliseconds delay, const std::atomic<bool>* cancel);

}  // namespace da::convex
