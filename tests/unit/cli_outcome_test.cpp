#include <gtest/gtest.h>

#include "convex/cli_outcome.h"

using da::Target;
using da::convex::judgeCliRun;

namespace {

// Output shapes as convex 1.49.0 prints them (ANSI colour on the markers, everything on stderr).
const std::string kDeploySuccess =
    "▌ Deploying code to deployment:\n"
    "▌ [Production] demo-team:demo-project:production (prod) (dashboard: http://localhost:6789/x)\n"
    "▌ └─ http://127.0.0.1:4010\n"
    "\x1b[32m✔\x1b[39m Deployed Convex functions to http://127.0.0.1:4010\n";

const std::string kDevSuccess =
    "▌ Developing against deployment:\n"
    "▌ └─ http://127.0.0.1:4010\n"
    "\x1b[32m✔\x1b[39m 10:11:12 Convex functions ready! (613.67ms)\n";

const std::string kDevStartPush401 =
    "▌ └─ http://127.0.0.1:4010\n"
    "\x1b[31m✖\x1b[39m Error: Unable to start push to http://127.0.0.1:4010\n"
    "Error fetching POST  http://127.0.0.1:4010/api/deploy2/start_push 401 Unauthorized: "
    "BadAdminKey: The provided admin key was invalid for this instance\n";

const std::string kSyntaxError =
    "✘ [ERROR] Unexpected \";\"\n"
    "\n"
    "    convex/broken.ts:1:63:\n"
    "      1 │ export const x = ;\n";

TEST(CliOutcome, DeploySuccessNeedsExitZeroAndTheSuccessLine) {
  auto outcome = judgeCliRun(Target::kProd, 0, kDeploySuccess);
  EXPECT_TRUE(outcome.succeeded);
  EXPECT_EQ(outcome.deployment_url, "http://127.0.0.1:4010");
  EXPECT_FALSE(judgeCliRun(Target::kProd, 1, kDeploySuccess).succeeded);
}

TEST(CliOutcome, DevSuccessLineIsTheOnlyProofOfAPush) {
  EXPECT_TRUE(judgeCliRun(Target::kDev, 0, kDevSuccess).succeeded);
  // The deploy success line does not count for dev and vice versa.
  EXPECT_FALSE(judgeCliRun(Target::kDev, 0, kDeploySuccess).succeeded);
  EXPECT_FALSE(judgeCliRun(Target::kProd, 0, kDevSuccess).succeeded);
}

TEST(CliOutcome, DevOnceExitZeroAfterRejectedPushIsAFailure) {
  auto outcome = judgeCliRun(Target::kDev, 0, kDevStartPush401);
  ASSERT_FALSE(outcome.succeeded);
  ASSERT_TRUE(outcome.error);
  EXPECT_EQ(outcome.error->reason, "push_rejected");
  EXPECT_NE(outcome.error->message.find("did not complete the push"), std::string::npos);
  EXPECT_NE(outcome.error->message.find("BadAdminKey"), std::string::npos);
}

TEST(CliOutcome, EsbuildErrorNamesTheFileAndLine) {
  auto outcome = judgeCliRun(Target::kProd, 1, kSyntaxError);
  ASSERT_TRUE(outcome.error);
  EXPECT_EQ(outcome.error->reason, "bundle_error");
  EXPECT_NE(outcome.error->message.find("Unexpected"), std::string::npos);
  EXPECT_NE(outcome.error->message.find("convex/broken.ts:1"), std::string::npos);
}

TEST(CliOutcome, RejectedDeployKeyIsClassified) {
  const std::string output =
      "✖ Error fetching POST  http://127.0.0.1:4010/api/deployment/url_for_key 401 Unauthorized: "
      "BadDeployKey: unknown key\n";
  auto outcome = judgeCliRun(Target::kProd, 1, output);
  ASSERT_TRUE(outcome.error);
  EXPECT_EQ(outcome.error->reason, "deploy_key_rejected");
}

TEST(CliOutcome, TypecheckAndSchemaFailuresAreClassified) {
  EXPECT_EQ(judgeCliRun(Target::kProd, 1, "✖ TypeScript typecheck via `tsc` failed.\n").error->reason,
            "typecheck_failed");
  EXPECT_EQ(judgeCliRun(Target::kDev, 1, "✖ Schema validation failed.\nDocument bad\n").error->reason,
            "schema_validation_failed");
}

TEST(CliOutcome, SilentFailureStillGetsAMessage) {
  auto outcome = judgeCliRun(Target::kProd, 1, "");
  ASSERT_TRUE(outcome.error);
  EXPECT_EQ(outcome.error->reason, "cli_failed");
  EXPECT_FALSE(outcome.error->message.empty());
}

TEST(CliOutcome, StripAnsiRemovesColourCodes) {
  EXPECT_EQ(da::convex::stripAnsi("\x1b[31m✖\x1b[39m bad"), "✖ bad");
}

}  // namespace
