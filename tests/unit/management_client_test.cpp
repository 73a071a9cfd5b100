// The Management API client against the in-process stand-in on a real loopback socket.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/StreamSocket.h>

#include "convex/deploy_key.h"
#include "convex/management_client.h"
#include "standin/standin.h"
#include "util/ids.h"

using namespace da::convex;

namespace {

const std::string kTeamToken = "unit-team-token-0123456789";

class ManagementClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    standin::Options options;
    options.team_tokens = {kTeamToken};
    options.deployments = {{"happy-otter-123", "prod"}, {"brave-fox-456", "dev"}};
    standin_ = std::make_unique<standin::Standin>(options);
    standin_->start();
  }
  void TearDown() override { standin_->stop(); }

  DeployKeyRequest request(const std::string& deployment) {
    DeployKeyRequest r;
    r.deployment_name = deployment;
    r.key_name = "unit test";
    r.allowed_actions = {"deployment:deploy"};
    r.expires_at_ms = da::nowUnixMillis() + 60 * 60 * 1000;
    return r;
  }

  std::unique_ptr<standin::Standin> standin_;
};

TEST_F(ManagementClientTest, MintsAKeyForTheDeployment) {
  ManagementClient client(standin_->origin(), kTeamToken);
  auto minted = client.createDeployKey(request("happy-otter-123"));
  ASSERT_TRUE(minted.deploy_key) << minted.error->message;
  auto info = classifyKey(*minted.deploy_key);
  EXPECT_EQ(info.type, "prod");
  EXPECT_EQ(info.deployment_name, "happy-otter-123");
}

TEST_F(ManagementClientTest, WrongTokenIsUnauthorizedAndNotEchoed) {
  ManagementClient client(standin_->origin(), "wrong-token-0123456789");
  auto minted = client.createDeployKey(request("happy-otter-123"));
  ASSERT_TRUE(minted.error);
  EXPECT_EQ(minted.error->reason, "unauthorized");
  EXPECT_EQ(minted.error->http_status, 401);
  EXPECT_EQ(minted.error->message.find("wrong-token"), std::string::npos);
}

TEST_F(ManagementClientTest, UnknownDeploymentIsNotFoundWithTheApisCode) {
  ManagementClient client(standin_->origin(), kTeamToken);
  auto minted = client.createDeployKey(request("no-such-deployment-1"));
  ASSERT_TRUE(minted.error);
  EXPECT_EQ(minted.error->reason, "not_found");
  EXPECT_EQ(minted.error->code, "DeploymentNotFound");
}

TEST_F(ManagementClientTest, ExpiryTooSoonIsABadRequest) {
  ManagementClient client(standin_->origin(), kTeamToken);
  auto r = request("happy-otter-123");
  r.expires_at_ms = da::nowUnixMillis() + 60 * 1000;  // the API wants >= 30 minutes
  auto minted = client.createDeployKey(r);
  ASSERT_TRUE(minted.error);
  EXPECT_EQ(minted.error->reason, "bad_request");
  EXPECT_EQ(minted.error->http_status, 400);
}

TEST(ManagementClient, UnreachableHostIsANetworkError) {
  // A port that was just free: bind, remember, close.
  uint16_t port;
  {
    Poco::Net::ServerSocket socket(Poco::Net::SocketAddress("127.0.0.1", 0));
    port = socket.address().port();
  }
  HttpOptions options;
  options.attempts = 2;
  options.timeout = std::chrono::milliseconds(2000);
  ManagementClient client("http://127.0.0.1:" + std::to_string(port), kTeamToken, options);
  DeployKeyRequest r;
  r.deployment_name = "happy-otter-123";
  r.key_name = "x";
  auto minted = client.createDeployKey(r);
  ASSERT_TRUE(minted.error);
  EXPECT_EQ(minted.error->reason, "network_error");
  EXPECT_EQ(minted.error->http_status, 0);
}

}  // namespace

namespace {

// A peer that accepts the call and never answers, as a hung API or a black-holed proxy does.
TEST(ManagementClient, CancelEndsACallThatWouldWaitOutItsTimeout) {
  Poco::Net::ServerSocket silent(Poco::Net::SocketAddress("127.0.0.1", 0));
  HttpOptions options;
  options.attempts = 2;
  options.timeout = std::chrono::milliseconds(20000);
  std::atomic<bool> cancel{false};
  options.cancel = &cancel;
  ManagementClient client("http://127.0.0.1:" + std::to_string(silent.address().port()), kTeamToken,
                          options);
  DeployKeyRequest r;
  r.deployment_name = "happy-otter-123";
  r.key_name = "x";

  MintResult minted;
  std::thread caller([&] { minted = client.createDeployKey(r); });
  // The request has arrived: the client is now blocked reading the answer.
  Poco::Net::StreamSocket connection = silent.acceptConnection();
  char first_bytes[4] = {};
  ASSERT_EQ(connection.receiveBytes(first_bytes, sizeof first_bytes), 4);
  EXPECT_EQ(std::string(first_bytes, 4), "POST");
  const auto cancelled_at = std::chrono::steady_clock::now();
  cancel = true;
  caller.join();

  ASSERT_TRUE(minted.error);
  EXPECT_EQ(minted.error->reason, "cancelled") << minted.error->message;
  EXPECT_FALSE(minted.deploy_key);
  // Not a retry after the cancel: one connection only, and nowhere near the 20 s timeout.
  EXPECT_LT(std::chrono::steady_clock::now() - cancelled_at, std::chrono::seconds(5));
  EXPECT_FALSE(silent.poll(Poco::Timespan(0), Poco::Net::Socket::SELECT_READ))
      << "the client connected again after it was cancelled";
}

TEST(ManagementClient, AlreadyCancelledCallsNothing) {
  Poco::Net::ServerSocket silent(Poco::Net::SocketAddress("127.0.0.1", 0));
  std::atomic<bool> cancel{true};
  HttpOptions options;
  options.cancel = &cancel;
  ManagementClient client("http://127.0.0.1:" + std::to_string(silent.address().port()), kTeamToken,
                          options);
  DeployKeyRequest r;
  r.deployment_name = "happy-otter-123";
  r.key_name = "x";
  auto minted = client.createDeployKey(r);
  ASSERT_TRUE(minted.error);
  EXPECT_EQ(minted.error->reason, "cancelled");
  EXPECT_FALSE(silent.poll(Poco::Timespan(0), Poco::Net::Socket::SELECT_READ));
}

}  // namespace
