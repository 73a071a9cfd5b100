#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "jobs/deployment_locks.h"

namespace {

// Spins (yielding) until `condition` holds or 10 s pass; a condition, not a sleep.
template <typename Condition>
bool eventually(Condition condition) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

}  // namespace

TEST(DeploymentLocks, ASecondPushToTheSameDeploymentWaitsForTheFirst) {
  da::DeploymentLocks locks;
  std::atomic<bool> cancel{false};
  std::atomic<bool> second_acquired{false};
  auto first = locks.acquire("happy-otter-123", cancel);
  ASSERT_TRUE(first);
  std::thread second([&] {
    auto held = locks.acquire("happy-otter-123", cancel);
    second_acquired = held.has_value();
  });
  ASSERT_TRUE(eventually([&] { return locks.waiting() == 1; }));
  EXPECT_FALSE(second_acquired);
  first.reset();  // releases
  second.join();
  EXPECT_TRUE(second_acquired);
}

TEST(DeploymentLocks, OtherDeploymentsDoNotWait) {
  da::DeploymentLocks locks;
  std::atomic<bool> cancel{false};
  auto a = locks.acquire("happy-otter-123", cancel);
  auto b = locks.acquire("brave-fox-456", cancel);
  EXPECT_TRUE(a);
  EXPECT_TRUE(b);
}

TEST(DeploymentLocks, CancelEndsTheWait) {
  da::DeploymentLocks locks;
  std::atomic<bool> cancel{false};
  auto first = locks.acquire("happy-otter-123", cancel);
  std::optional<bool> second_result;
  std::thread second([&] { second_result = locks.acquire("happy-otter-123", cancel).has_value(); });
  ASSERT_TRUE(eventually([&] { return locks.waiting() == 1; }));
  cancel = true;
  second.join();
  ASSERT_TRUE(second_result);
  EXPECT_FALSE(*second_result);
  EXPECT_EQ(locks.waiting(), 0u);
}
