#include <gtest/gtest.h>

#include "convex/deploy_key.h"

using namespace da::convex;
using da::Target;

TEST(DeployKey, ClassifiesLikeTheCli) {
  auto prod = classifyKey("prod:happy-otter-123|eyJ2IjoiMSJ9");
  EXPECT_EQ(prod.kind, KeyKind::kDeployment);
  EXPECT_EQ(prod.type, "prod");
  EXPECT_EQ(prod.deployment_name, "happy-otter-123");

  auto preview_own = classifyKey("preview:calm-cow-456|secret");
  EXPECT_EQ(preview_own.kind, KeyKind::kDeployment);
  EXPECT_EQ(preview_own.deployment_name, "calm-cow-456");

  EXPECT_EQ(classifyKey("preview:team:project|secret").kind, KeyKind::kPreviewKey);
  EXPECT_EQ(classifyKey("project:team:project|secret").kind, KeyKind::kProjectToken);
  auto legacy = classifyKey("bold-hyena-681|01c2ab");
  EXPECT_EQ(legacy.kind, KeyKind::kDeployment);
  EXPECT_EQ(legacy.type, "");
  EXPECT_EQ(legacy.deployment_name, "bold-hyena-681");
  EXPECT_EQ(classifyKey("no-bar-at-all").kind, KeyKind::kInvalid);
  EXPECT_EQ(classifyKey("prod:x|").kind, KeyKind::kInvalid);
}

TEST(DeployKey, RefusesAProdKeyForADevPush) {
  // `convex dev` with a prod key pushes to prod with no guard; the agent must refuse it.
  auto conflict = keyTargetConflict(classifyKey("prod:happy-otter-123|s3cret"), Target::kDev, "");
  ASSERT_TRUE(conflict);
  EXPECT_NE(conflict->find("production"), std::string::npos);
  EXPECT_TRUE(keyTargetConflict(classifyKey("dev:brave-fox-456|s3cret"), Target::kProd, ""));
  EXPECT_FALSE(keyTargetConflict(classifyKey("dev:brave-fox-456|s3cret"), Target::kDev, ""));
  EXPECT_FALSE(keyTargetConflict(classifyKey("prod:happy-otter-123|s3cret"), Target::kProd, ""));
}

TEST(DeployKey, RefusesAKeyForAnotherDeployment) {
  auto conflict = keyTargetConflict(classifyKey("prod:happy-otter-123|s3cret"), Target::kProd, "other-name-1");
  ASSERT_TRUE(conflict);
  EXPECT_NE(conflict->find("happy-otter-123"), std::string::npos);
}

TEST(DeployKey, DeploymentNamesAreChecked) {
  EXPECT_TRUE(isValidDeploymentName("happy-otter-123"));
  EXPECT_FALSE(isValidDeploymentName(""));
  EXPECT_FALSE(isValidDeploymentName("../etc"));
  EXPECT_FALSE(isValidDeploymentName("Upper"));
  EXPECT_FALSE(isValidDeploymentName("a/b"));
  EXPECT_FALSE(isValidDeploymentName(std::string(65, 'a')));
}
