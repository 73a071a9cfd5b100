// The webhook delivery's rules, with the network replaced by a scripted sender: which URLs are
// refused, the signature, the backoff, what is retried, and that a pending delivery is resumed
// from the stored report.
#include <gtest/gtest.h>

#include <condition_variable>
#include <deque>
#include <mutex>

#include "jobs/callback_delivery.h"
#include "support/scratch_dir.h"
#include "util/ids.h"

namespace {

using da::CallbackDelivery;
using namespace std::chrono_literals;

da::CallbackSettings allowing(std::vector<std::string> hosts) {
  da::CallbackSettings settings;
  settings.allowed_hosts = std::move(hosts);
  settings.secret = "unit-test-callback-secret-0123456789";
  return settings;
}

TEST(CallbackUrl, OnlyAnAllowedHostAndPortWithoutCredentialsIsAccepted) {
  const auto settings = allowing({"hooks.example.com", "127.0.0.1:9000"});
  EXPECT_FALSE(da::callbackUrlRefusal("https://hooks.example.com/deploys?x=1", settings));
  EXPECT_FALSE(da::callbackUrlRefusal("http://127.0.0.1:9000/h", settings));
  EXPECT_FALSE(da::callbackUrlRefusal("https://HOOKS.example.com./deploys", settings)) << "case and a trailing dot";

  EXPECT_TRUE(da::callbackUrlRefusal("http://hooks.example.com/deploys", settings)) << "port 80 is not 443";
  EXPECT_TRUE(da::callbackUrlRefusal("https://evil.hooks.example.com/", settings)) << "no subdomains";
  EXPECT_TRUE(da::callbackUrlRefusal("http://127.0.0.1:9001/h", settings));
  EXPECT_TRUE(da::callbackUrlRefusal("http://2130706433:9000/h", settings)) << "another spelling of 127.0.0.1";
  EXPECT_TRUE(da::callbackUrlRefusal("https://user:pw@hooks.example.com/", settings));
  EXPECT_TRUE(da::callbackUrlRefusal("https://hooks.example.com@evil.example/", settings)) << "the host is evil.example";
  EXPECT_TRUE(da::callbackUrlRefusal("https://evil.example\\@hooks.example.com/", settings)) << "read two ways";
  EXPECT_FALSE(da::callbackUrlRefusal("https://hooks.example.com/d?email=a@b.example", settings)) << "an @ in the query";
  EXPECT_TRUE(da::callbackUrlRefusal("ftp://hooks.example.com/", settings));
  EXPECT_TRUE(da::callbackUrlRefusal("https://hooks.example.com/#frag", settings));
  EXPECT_TRUE(da::callbackUrlRefusal("https://hooks.example.com/a b", settings));
  const auto nothing_allowed = da::callbackUrlRefusal("https://hooks.example.com/", allowing({}));
  ASSERT_TRUE(nothing_allowed);
  EXPECT_NE(nothing_allowed->find("--callback-hosts"), std::string::npos);
  // The refusal never repeats the URL (it may carry a token in its query or user info).
  const auto refused = da::callbackUrlRefusal("https://user:hunter2secret@evil.example/?token=abc", settings);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->find("hunter2secret"), std::string::npos);
  EXPECT_EQ(refused->find("token=abc"), std::string::npos);
}

TEST(CallbackSignature, IsHmacSha256OfTimestampDotBody) {
  // Computed independently: python3 -c "import hmac,hashlib;
  //   print(hmac.new(b'whsec-test', b'1700000000.{\"a\":1}', hashlib.sha256).hexdigest())"
  EXPECT_EQ(da::callbackSignature("whsec-test", 1700000000, "{\"a\":1}"),
            "t=1700000000,v1=fed7a1a6c799a6367d73724d76bc70c16678908a32a879cd1ded6565ac05cece");
}

TEST(CallbackBackoff, DoublesFromTheFirstRetryUpToTheCap) {
  da::CallbackSettings settings;
  settings.first_retry = 2000ms;
  settings.max_retry = 10000ms;
  EXPECT_EQ(CallbackDelivery::retryDelay(settings, 1), 2000ms);
  EXPECT_EQ(CallbackDelivery::retryDelay(settings, 2), 4000ms);
  EXPECT_EQ(CallbackDelivery::retryDelay(settings, 3), 8000ms);
  EXPECT_EQ(CallbackDelivery::retryDelay(settings, 4), 10000ms);
  EXPECT_EQ(CallbackDelivery::retryDelay(settings, 30), 10000ms);
}

// A sender that answers from a script and counts what it was asked.
struct ScriptedReceiver {
  std::mutex mutex;
  std::condition_variable posted;
  std::deque<CallbackDelivery::Answer> script;
  std::vector<std::vector<std::pair<std::string, std::string>>> headers;

  CallbackDelivery::Post post() {
    return [this](const std::string&, const std::vector<std::pair<std::string, std::string>>& sent,
                  const std::string&, const std::atomic<bool>&) {
      std::lock_guard lock(mutex);
      headers.push_back(sent);
      CallbackDelivery::Answer answer{200, true, false, "HTTP 200"};
      if (!script.empty()) {
        answer = script.front();
        script.pop_front();
      }
      posted.notify_all();
      return answer;
    };
  }
};

class Delivery : public ::testing::Test {
 protected:
  Delivery() : scratch_("callback-delivery"), store_(scratch_.path() / "jobs") {
    settings_.callbacks = allowing({"hooks.example.com"});
    settings_.callbacks.first_retry = 1ms;
    settings_.callbacks.max_attempts = 4;
  }

  da::DeployReport finishedWithCallback() {
    da::DeployReport report;
    report.id = da::newDeployId();
    report.status = da::DeployStatus::kSucceeded;
    report.phase = "done";
    report.created_at_ms = report.finished_at_ms = da::nowUnixMillis();
    report.callback.emplace();
    report.callback->url = "https://hooks.example.com/deploys";
    return report;
  }

  da::DeployReport settled(const std::string& id) {
    auto report = store_.waitUntil(
        id, [](const da::DeployReport& r) { return r.callback && r.callback->status != "pending"; }, 30s);
    return report.value_or(da::DeployReport{});
  }

  testsupport::ScratchDir scratch_;
  da::Settings settings_;
  da::JobStore store_;
  ScriptedReceiver receiver_;
};

TEST_F(Delivery, RetriesWhatMayPassAndRecordsEveryAttempt) {
  receiver_.script = {{503, false, true, "HTTP 503"}, {0, false, true, "network: Connection refused"}};
  CallbackDelivery delivery(settings_, store_, receiver_.post());
  store_.afterFinished([&](const da::DeployReport& r) { delivery.jobFinished(r); });
  delivery.start();
  const auto report = finishedWithCallback();
  store_.put(report);

  const auto done = settled(report.id);
  ASSERT_TRUE(done.callback);
  EXPECT_EQ(done.callback->status, "delivered");
  ASSERT_EQ(done.callback->attempts.size(), 3u);
  EXPECT_EQ(done.callback->attempts[0].http_status, 503);
  EXPECT_EQ(done.callback->attempts[1].outcome, "network: Connection refused");
  EXPECT_EQ(done.callback->attempts[2].http_status, 200);
  std::lock_guard lock(receiver_.mutex);
  ASSERT_EQ(receiver_.headers.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    std::map<std::string, std::string> sent(receiver_.headers[i].begin(), receiver_.headers[i].end());
    EXPECT_EQ(sent["Deploy-Agent-Attempt"], std::to_string(i + 1));
    EXPECT_EQ(sent["Deploy-Agent-Delivery"], report.id);
    EXPECT_EQ(sent["Deploy-Agent-Signature"].rfind("t=", 0), 0u);
  }
}

TEST_F(Delivery, StopsAtARefusalAndAfterTheLastAttempt) {
  receiver_.script = {{400, false, false, "HTTP 400"}};
  CallbackDelivery delivery(settings_, store_, receiver_.post());
  store_.afterFinished([&](const da::DeployReport& r) { delivery.jobFinished(r); });
  delivery.start();
  const auto refused = finishedWithCallback();
  store_.put(refused);
  auto done = settled(refused.id);
  EXPECT_EQ(done.callback->status, "failed");
  EXPECT_EQ(done.callback->attempts.size(), 1u);

  {
    std::lock_guard lock(receiver_.mutex);
    for (int i = 0; i < 4; ++i) receiver_.script.push_back({500, false, true, "HTTP 500"});
  }
  const auto exhausted = finishedWithCallback();
  store_.put(exhausted);
  done = settled(exhausted.id);
  EXPECT_EQ(done.callback->status, "failed");
  EXPECT_EQ(done.callback->attempts.size(), 4u) << "max_attempts, the first included";
  EXPECT_EQ(done.callback->next_attempt_at_ms, 0);
}

TEST_F(Delivery, APendingCallbackInAStoredReportIsResumedAtStart) {
  auto report = finishedWithCallback();
  report.callback->attempts.push_back({da::nowUnixMillis(), 502, "HTTP 502", 3});
  report.callback->next_attempt_at_ms = da::nowUnixMillis();
  store_.put(report);
  {
    // What a restart finds: the report on disk, read back by a new store.
    da::JobStore restarted(scratch_.path() / "jobs");
    restarted.recover();
    CallbackDelivery delivery(settings_, restarted, receiver_.post());
    delivery.start();
    auto done = restarted.waitUntil(
        report.id, [](const da::DeployReport& r) { return r.callback && r.callback->status != "pending"; }, 30s);
    ASSERT_TRUE(done && done->callback);
    EXPECT_EQ(done->callback->status, "delivered");
    ASSERT_EQ(done->callback->attempts.size(), 2u);
    EXPECT_EQ(done->callback->attempts[0].outcome, "HTTP 502") << "the attempt before the restart is kept";
  }
}

}  // namespace
