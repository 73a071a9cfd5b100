#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <future>

#include "jobs/idempotency_index.h"
#include "util/ids.h"

namespace fs = std::filesystem;
using Kind = da::IdempotencyIndex::Claim::Kind;

namespace {

constexpr auto kDay = std::chrono::hours(24);

fs::path freshDir() {
  fs::path dir = fs::temp_directory_path() / ("da-idem-" + da::newDeployId());
  fs::remove_all(dir);
  return dir;
}

std::string everything(const fs::path& dir) {
  std::string all;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    all.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  return all;
}

}  // namespace

TEST(IdempotencyIndex, TheSameRequestGetsTheSameJobAlsoAfterARestart) {
  const fs::path dir = freshDir();
  std::string fingerprint;
  {
    da::IdempotencyIndex index(dir, kDay);
    ASSERT_EQ(index.load(), "");
    fingerprint = index.fingerprint(R"({"env":{"API_KEY":"sk-secret-value-123"}})", "abc");
    EXPECT_EQ(index.claim("order-7", fingerprint, std::chrono::seconds(1)).kind, Kind::kClaimed);
    std::string error;
    ASSERT_TRUE(index.accept("order-7", "dep_000000000000000000000001", error)) << error;
    auto again = index.claim("order-7", fingerprint, std::chrono::seconds(1));
    EXPECT_EQ(again.kind, Kind::kReplay);
    EXPECT_EQ(again.job_id, "dep_000000000000000000000001");
  }
  da::IdempotencyIndex restarted(dir, kDay);
  ASSERT_EQ(restarted.load(), "");
  EXPECT_EQ(restarted.fingerprint(R"({"env":{"API_KEY":"sk-secret-value-123"}})", "abc"), fingerprint)
      << "the fingerprint key survives a restart";
  auto replay = restarted.claim("order-7", fingerprint, std::chrono::seconds(1));
  EXPECT_EQ(replay.kind, Kind::kReplay);
  EXPECT_EQ(replay.job_id, "dep_000000000000000000000001");
  auto other = restarted.claim("order-7", restarted.fingerprint("{}", "abc"), std::chrono::seconds(1));
  EXPECT_EQ(other.kind, Kind::kConflict);
  // Neither the key nor anything of the request is stored as is.
  const std::string stored = everything(dir);
  EXPECT_EQ(stored.find("order-7"), std::string::npos);
  EXPECT_EQ(stored.find("sk-secret-value-123"), std::string::npos);
}

TEST(IdempotencyIndex, AConcurrentRequestWaitsForTheFirstAndGetsItsJob) {
  da::IdempotencyIndex index(freshDir(), kDay);
  ASSERT_EQ(index.load(), "");
  const std::string fingerprint = index.fingerprint("{}", "bundle");
  ASSERT_EQ(index.claim("k", fingerprint, std::chrono::seconds(1)).kind, Kind::kClaimed);
  auto second = std::async(std::launch::async, [&] { return index.claim("k", fingerprint, std::chrono::seconds(30)); });
  EXPECT_EQ(second.wait_for(std::chrono::milliseconds(50)), std::future_status::timeout) << "it must wait";
  std::string error;
  ASSERT_TRUE(index.accept("k", "dep_000000000000000000000002", error));
  const auto answer = second.get();
  EXPECT_EQ(answer.kind, Kind::kReplay);
  EXPECT_EQ(answer.job_id, "dep_000000000000000000000002");
}

TEST(IdempotencyIndex, ARefusedRequestFreesTheKeyAndAWaiterTakesIt) {
  da::IdempotencyIndex index(freshDir(), kDay);
  ASSERT_EQ(index.load(), "");
  const std::string fingerprint = index.fingerprint("{}", "bundle");
  ASSERT_EQ(index.claim("k", fingerprint, std::chrono::seconds(1)).kind, Kind::kClaimed);
  auto second = std::async(std::launch::async, [&] { return index.claim("k", fingerprint, std::chrono::seconds(30)); });
  index.release("k");
  EXPECT_EQ(second.get().kind, Kind::kClaimed);
  // A claim still being taken in past the wait: busy, not a second job.
  EXPECT_EQ(index.claim("k", fingerprint, std::chrono::milliseconds(20)).kind, Kind::kBusy);
}

TEST(IdempotencyIndex, KeysExpireAfterTheirTime) {
  const fs::path dir = freshDir();
  da::IdempotencyIndex index(dir, std::chrono::milliseconds(1));
  ASSERT_EQ(index.load(), "");
  const std::string fingerprint = index.fingerprint("{}", "bundle");
  ASSERT_EQ(index.claim("k", fingerprint, std::chrono::seconds(1)).kind, Kind::kClaimed);
  std::string error;
  ASSERT_TRUE(index.accept("k", "dep_000000000000000000000003", error));
  const auto later = std::chrono::steady_clock::now() + std::chrono::milliseconds(5);
  while (std::chrono::steady_clock::now() < later) {
  }
  EXPECT_EQ(index.expire(), 1u);
  EXPECT_EQ(index.size(), 0u);
  size_t files = 0;
  for (const auto& entry : fs::directory_iterator(dir)) files += entry.path().extension() == ".json";
  EXPECT_EQ(files, 0u);
}
