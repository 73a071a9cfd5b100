// RetryPolicy: backoff steps, jitter, Retry-After parsing, and the cancellable sleep.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <vector>

#include "convex/retry_policy.h"

using namespace da::convex;
using std::chrono::milliseconds;

namespace {

std::vector<int64_t> steps(const RetryPolicy& policy, int retries) {
  std::vector<int64_t> out;
  milliseconds previous{0};
  for (int retry = 1; retry <= retries; ++retry) {
    previous = backoffDelay(policy, retry, previous);
    out.push_back(previous.count());
  }
  return out;
}

std::chrono::system_clock::time_point utc(int64_t unix_seconds) {
  return std::chrono::system_clock::time_point(std::chrono::seconds(unix_seconds));
}

constexpr int64_t kOct21_2015_072800 = 1445412480;  // Wed, 21 Oct 2015 07:28:00 GMT

TEST(RetryPolicy, WithoutJitterTheStepDoublesUpToTheCap) {
  auto policy = RetryPolicy{}.withBaseDelay(milliseconds(100)).withMaxDelay(milliseconds(1000)).withJitter(Jitter::kNone);
  EXPECT_EQ(steps(policy, 6), (std::vector<int64_t>{100, 200, 400, 800, 1000, 1000}));
  EXPECT_EQ(backoffDelay(policy, 1000, milliseconds(0)).count(), 1000);  // no overflow far out
}

TEST(RetryPolicy, FullJitterScalesTheStepByTheRandomDraw) {
  auto policy = RetryPolicy{}
                    .withBaseDelay(milliseconds(100))
                    .withMaxDelay(milliseconds(1000))
                    .withJitter(Jitter::kFull)
                    .withRandom([] { return 0.5; });
  EXPECT_EQ(steps(policy, 5), (std::vector<int64_t>{50, 100, 200, 400, 500}));
  policy.withRandom([] { return 0.0; });
  EXPECT_EQ(steps(policy, 3), (std::vector<int64_t>{0, 0, 0}));
  // A misbehaving source is clamped into [0, 1].
  policy.withRandom([] { return 7.0; });
  EXPECT_EQ(steps(policy, 2), (std::vector<int64_t>{100, 200}));
  policy.withRandom([] { return -3.0; });
  EXPECT_EQ(steps(policy, 1), (std::vector<int64_t>{0}));
}

TEST(RetryPolicy, DecorrelatedJitterGrowsFromThePreviousWaitWithinTheCap) {
  auto policy = RetryPolicy{}
                    .withBaseDelay(milliseconds(100))
                    .withMaxDelay(milliseconds(1000))
                    .withJitter(Jitter::kDecorrelated)
                    .withRandom([] { return 1.0; });
  // The top of [base, 3 * previous] each time: 300, 900, then the cap.
  EXPECT_EQ(steps(policy, 4), (std::vector<int64_t>{300, 900, 1000, 1000}));
  policy.withRandom([] { return 0.0; });
  EXPECT_EQ(steps(policy, 3), (std::vector<int64_t>{100, 100, 100}));
  policy.withRandom([] { return 0.5; });
  EXPECT_EQ(steps(policy, 3), (std::vector<int64_t>{200, 350, 575}));
}

TEST(RetryPolicy, DefaultRandomStaysWithinTheStep) {
  auto policy = RetryPolicy{}.withBaseDelay(milliseconds(100)).withMaxDelay(milliseconds(400));
  for (int i = 0; i < 200; ++i) {
    const auto d = backoffDelay(policy, 3, milliseconds(0)).count();
    EXPECT_GE(d, 0);
    EXPECT_LE(d, 400);
  }
}

TEST(RetryPolicy, AttemptsAreAtLeastOne) {
  EXPECT_EQ(RetryPolicy{}.withMaxAttempts(0).attempts(), 1);
  EXPECT_EQ(RetryPolicy{}.withMaxAttempts(-4).attempts(), 1);
  EXPECT_EQ(RetryPolicy{}.withMaxAttempts(6).attempts(), 6);
}

TEST(RetryPolicy, RetryAfterInSeconds) {
  const auto now = utc(kOct21_2015_072800);
  EXPECT_EQ(parseRetryAfter("120", now), milliseconds(120000));
  EXPECT_EQ(parseRetryAfter(" 7 ", now), milliseconds(7000));
  EXPECT_EQ(parseRetryAfter("0", now), milliseconds(0));
  EXPECT_EQ(parseRetryAfter("", now), std::nullopt);
  EXPECT_EQ(parseRetryAfter("-5", now), std::nullopt);
  EXPECT_EQ(parseRetryAfter("1.5", now), std::nullopt);
  EXPECT_EQ(parseRetryAfter("soon", now), std::nullopt);
  EXPECT_GT(parseRetryAfter("99999999999999", now).value(), milliseconds(86400000));  // huge, not wrapped
}

TEST(RetryPolicy, RetryAfterAsAnHttpDateInEachForm) {
  const auto now = utc(kOct21_2015_072800 - 5);
  EXPECT_EQ(parseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT", now), milliseconds(5000));
  EXPECT_EQ(parseRetryAfter("Wednesday, 21-Oct-15 07:28:00 GMT", now), milliseconds(5000));
  EXPECT_EQ(parseRetryAfter("Wed Oct 21 07:28:00 2015", now), milliseconds(5000));
  // A date already past: retry at once.
  EXPECT_EQ(parseRetryAfter("Wed, 21 Oct 2015 07:27:00 GMT", now), milliseconds(0));
  EXPECT_EQ(parseRetryAfter("Thu Oct  1 00:00:00 2015", utc(1443657600 - 2)), milliseconds(2000));
  // Not quite a date: ignored (the backoff alone decides the wait).
  EXPECT_EQ(parseRetryAfter("Wed, 41 Oct 2015 07:28:00 GMT", now), std::nullopt);
  EXPECT_EQ(parseRetryAfter("Wed, 21 Oct 2015 07:28:00 PST", now), std::nullopt);
  EXPECT_EQ(parseRetryAfter("Wed, 21 Foo 2015 07:28:00 GMT", now), std::nullopt);
}

TEST(RetryPolicy, RetryableStatuses) {
  for (int status : {429, 500, 502, 503, 504}) EXPECT_TRUE(isRetryableStatus(status)) << status;
  for (int status : {200, 301, 400, 401, 403, 404, 407, 408, 409, 422, 501, 505}) {
    EXPECT_FALSE(isRetryableStatus(status)) << status;
  }
}

TEST(RetryPolicy, SleepEndsAtOnceWhenAlreadyCancelled) {
  std::atomic<bool> cancel{true};
  const auto started = std::chrono::steady_clock::now();
  EXPECT_FALSE(sleepUnlessCancelled(milliseconds(60000), &cancel));
  EXPECT_LT(std::chrono::steady_clock::now() - started, milliseconds(1000));
}

TEST(RetryPolicy, SleepWaitsItsTimeWithoutACancel) {
  const auto started = std::chrono::steady_clock::now();
  EXPECT_TRUE(sleepUnlessCancelled(milliseconds(5), nullptr));
  EXPECT_GE(std::chrono::steady_clock::now() - started, milliseconds(5));
}

TEST(RetryPolicy, InjectedSleepAndClocksAreUsed) {
  std::vector<milliseconds> slept;
  const auto fixed = std::chrono::steady_clock::time_point(std::chrono::hours(5));
  auto policy = RetryPolicy{}
                    .withSleep([&](milliseconds d, const std::atomic<bool>*) {
                      slept.push_back(d);
                      return true;
                    })
                    .withClock([&] { return fixed; })
                    .withWallClock([] { return utc(kOct21_2015_072800); });
  EXPECT_TRUE(policy.wait(milliseconds(1234), nullptr));
  EXPECT_EQ(slept, (std::vector<milliseconds>{milliseconds(1234)}));
  EXPECT_EQ(policy.now(), fixed);
  EXPECT_EQ(policy.wallNow(), utc(kOct21_2015_072800));
}

}  // namespace
