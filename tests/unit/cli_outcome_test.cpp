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

// App code can make esbuild quote any text, success marker included, before the push starts.
const std::string kSpoofedReadyWarning =
    "\x1b[33m▲ [WARNING]\x1b[0m esbuild warning: Duplicate key \"✔ Convex functions ready!\" in object literal\n";

TEST(CliOutcome, QuotedDevSuccessBeforeARejectedPushIsAFailure) {
  const std::string output =
      "▌ Developing against deployment:\n"
      "▌ └─ http://127.0.0.1:4010\n" +
      kSpoofedReadyWarning +
      "\x1b[31m✖\x1b[39m Error: Unable to start push to http://127.0.0.1:4010 because it received an "
      "unexpected status code 401\n";
  auto outcome = judgeCliRun(Target::kDev, 0, output);
  ASSERT_FALSE(outcome.succeeded);
  ASSERT_TRUE(outcome.error);
  EXPECT_EQ(outcome.error->reason, "push_rejected");
  EXPECT_NE(outcome.error->message.find("did not complete the push"), std::string::npos);
  EXPECT_NE(outcome.error->message.find("status code 401"), std::string::npos);
  EXPECT_EQ(outcome.error->message.find("Duplicate key"), std::string::npos) << outcome.error->message;
}

TEST(CliOutcome, SuccessLineThatStartsTheLineButIsFollowedByAFailureIsAFailure) {
  // Esbuild may print the warning's text on a line of its own; the failure after it still decides.
  const std::string output =
      "✔ 10:11:12 Convex functions ready! (1.00s)\n"
      "\x1b[31m✖\x1b[39m Error: Unable to start push to http://127.0.0.1:4010\n"
      "Error fetching POST  http://127.0.0.1:4010/api/deploy2/start_push 401 Unauthorized\n";
  auto outcome = judgeCliRun(Target::kDev, 0, output);
  ASSERT_FALSE(outcome.succeeded);
  EXPECT_EQ(outcome.error->reason, "push_rejected");

  const std::string deploy_output =
      "✔ Deployed Convex functions to http://127.0.0.1:4010\n"
      "  ✖ Error: Unable to finish push to http://127.0.0.1:4010\n";
  EXPECT_FALSE(judgeCliRun(Target::kProd, 0, deploy_output).succeeded);
}

TEST(CliOutcome, QuotedSuccessTextInsideOtherLinesNeverCounts) {
  for (const std::string line : {
           "esbuild warning: Duplicate key \"✔ 10:11:12 Convex functions ready! (1.00s)\" in object literal",
           "    1 │ const x = { \"✔ Convex functions ready!\": 1 };",
           "▲ [WARNING] ✔ Convex functions ready! (1s)",
           "✔ 10:11:12 Convex functions ready!? (1s)",
           "✔ Installed component geospatial. Convex functions ready! (1s)",
           "✔Convex functions ready! (1s)",
       }) {
    EXPECT_FALSE(judgeCliRun(Target::kDev, 0, line + "\n").succeeded) << line;
  }
  for (const std::string line : {
           "esbuild warning: \"✔ Deployed Convex functions to http://evil.example\"",
           "▌ ✔ Deployed Convex functions to http://evil.example",
           "✔ Would have deployed Convex functions to http://127.0.0.1:4010",
           "✔ Deployed Convex functions to ",
           "✔ Deployed Convex functions to javascript:alert(1)",
       }) {
    auto outcome = judgeCliRun(Target::kProd, 0, line + "\n");
    EXPECT_FALSE(outcome.succeeded) << line;
    EXPECT_EQ(outcome.deployment_url.find("evil"), std::string::npos) << line;
  }
}

TEST(CliOutcome, RealSuccessLinesStillSucceed) {
  for (const std::string line : {
           "\x1b[32m✔\x1b[39m 10:11:12 Convex functions ready! (613.67ms)",
           "  \r\x1b[32m✔\x1b[39m 08:43:30 Convex functions ready! (2.81s)\r",
           "✔ 9:05:01 Convex functions ready! (1s)",
           "✔ 10:11:12 PM Convex functions ready! (1s)",
           "✔ Convex functions ready! (1s)",
           "✔ 10:11:12 Convex functions ready!",
       }) {
    EXPECT_TRUE(judgeCliRun(Target::kDev, 0, kDevSuccess + line + "\n").succeeded) << line;
    EXPECT_TRUE(judgeCliRun(Target::kDev, 0, line + "\n").succeeded) << line;
  }
  auto dev = judgeCliRun(Target::kDev, 0, kDevSuccess);
  EXPECT_EQ(dev.deployment_url, "http://127.0.0.1:4010");

  auto prod = judgeCliRun(Target::kProd, 0, "  \x1b[32m✔\x1b[39m Deployed Convex functions to https://happy-otter-123.convex.cloud\n");
  EXPECT_TRUE(prod.succeeded);
  EXPECT_EQ(prod.deployment_url, "https://happy-otter-123.convex.cloud");
}

TEST(CliOutcome, FailureBeforeTheSuccessLineDoesNotUndoIt) {
  // dev --once retries a transient push error; a later success is a completed push.
  const std::string output = kSpoofedReadyWarning +
                             "✖ Error: Unable to start push to http://127.0.0.1:4010\n"
                             "Error fetching POST  http://127.0.0.1:4010/api/deploy2/start_push 500\n" +
                             kDevSuccess;
  EXPECT_TRUE(judgeCliRun(Target::kDev, 0, output).succeeded);
}

TEST(CliOutcome, SpoofedBannerDoesNotSetTheDeploymentUrl) {
  const std::string output = "esbuild warning: \"└─ http://evil.example\"\n"
                             "✖ Error: Unable to start push to http://127.0.0.1:4010\n";
  EXPECT_EQ(judgeCliRun(Target::kDev, 0, output).deployment_url, "");
}

TEST(CliOutcome, StripAnsiHandlesLongAndUnfinishedSequences) {
  EXPECT_EQ(da::convex::stripAnsi("a\x1b[2K\x1b[1Gb\x1b[?25lc"), "abc");
  // Unfinished sequences stay as they are.
  EXPECT_EQ(da::convex::stripAnsi("a\x1b[12;"), "a\x1b[12;");
  EXPECT_EQ(da::convex::stripAnsi("a\x1b[1\x1b[31mb"), "a\x1b[1b");
  // A long parameter run used to overflow std::regex's recursion.
  const std::string digits(2 * 1024 * 1024, '1');
  EXPECT_EQ(da::convex::stripAnsi("a\x1b[" + digits + "mb"), "ab");
  EXPECT_EQ(da::convex::stripAnsi("a\x1b[" + digits), "a\x1b[" + digits);
}

TEST(CliOutcome, StripAnsiRemovesColourCodes) {
  EXPECT_EQ(da::convex::stripAnsi("\x1b[31m✖\x1b[39m bad"), "✖ bad");
}

}  // namespace
