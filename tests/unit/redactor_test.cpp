#include <gtest/gtest.h>

#include "util/ids.h"
#include "util/redactor.h"

TEST(Redactor, ReplacesRegisteredSecretsEverywhere) {
  da::Redactor redactor;
  redactor.addSecret("super-secret-token-value");
  auto out = redactor.redact("a super-secret-token-value b super-secret-token-value");
  EXPECT_EQ(out.find("super-secret"), std::string::npos);
  EXPECT_EQ(out, "a [REDACTED] b [REDACTED]");
}

TEST(Redactor, ReplacesKeyShapedValuesItNeverSaw) {
  auto out = da::redactKeyShapes("key=prod:happy-otter-123|eyJ2IjoiYWJjIn0= and bold-hyena-681|01c2abcdef");
  EXPECT_EQ(out.find("eyJ2"), std::string::npos);
  EXPECT_EQ(out.find("01c2abcdef"), std::string::npos);
  EXPECT_NE(out.find("prod:happy-otter-123|[REDACTED]"), std::string::npos);
}

TEST(Redactor, ReplacesTheSecretOfAKeyPrintedOnlyInPart) {
  da::Redactor redactor;
  redactor.addSecret("prod:happy-otter-123|eyJ2MiI6IjU0N2M0MWZj");
  // esbuild's code frame elides the start of a long line: "...er-123|<secret>".
  auto out = redactor.redact("1 | ...er-123|eyJ2MiI6IjU0N2M0MWZj\" +;");
  EXPECT_EQ(out.find("eyJ2MiI6IjU0N2M0MWZj"), std::string::npos) << out;
  // Unregistered, cut-off keys are caught by shape when the secret part is long.
  auto shaped = da::redactKeyShapes("...ox-456|eyJ2MiI6IjAbCdEfGhIjKlMn0= +;");
  EXPECT_EQ(shaped.find("eyJ2MiI6IjAbCdEfGhIjKlMn0="), std::string::npos) << shaped;
}

TEST(Redactor, ReplacesAuthorizationValues) {
  auto out = da::redactKeyShapes("Authorization: Bearer abcdef123456 and {\"authorization\": \"Convex zyxwvu987654\"}");
  EXPECT_EQ(out.find("abcdef123456"), std::string::npos);
  EXPECT_EQ(out.find("zyxwvu987654"), std::string::npos);
}

TEST(Redactor, LeavesOrdinaryCliTextAlone) {
  const std::string line = "✔ 10:16:13 Convex functions ready! (6.02s) Bearer of news";
  EXPECT_EQ(da::redactKeyShapes(line), line);
}

TEST(Redactor, IgnoresTooShortSecrets) {
  da::Redactor redactor;
  redactor.addSecret("ab");
  EXPECT_EQ(redactor.redact("abc"), "abc");
}

TEST(Ids, DeployIdsAreValidatedStrictly) {
  auto id = da::newDeployId();
  EXPECT_TRUE(da::isValidDeployId(id));
  EXPECT_NE(id, da::newDeployId());
  EXPECT_FALSE(da::isValidDeployId("dep_../../etc/passwd000000000"));
  EXPECT_FALSE(da::isValidDeployId("dep_ABCDEF0123456789abcdef01"));
}

TEST(Ids, ConstantTimeEquals) {
  EXPECT_TRUE(da::constantTimeEquals("token-123", "token-123"));
  EXPECT_FALSE(da::constantTimeEquals("token-123", "token-124"));
  EXPECT_FALSE(da::constantTimeEquals("token", "token-123"));
  EXPECT_FALSE(da::constantTimeEquals("", ""));
}

TEST(Ids, Rfc3339) { EXPECT_EQ(da::formatRfc3339(1700000000123), "2023-11-14T22:13:20.123Z"); }

#include "util/strings.h"

TEST(Strings, SplitOnKeepsEmptyPieces) {
  EXPECT_EQ(da::splitOn("a//b", '/'), (std::vector<std::string_view>{"a", "", "b"}));
  EXPECT_EQ(da::splitOn("", '/'), (std::vector<std::string_view>{""}));
  EXPECT_EQ(da::splitOn("prod:name", ':'), (std::vector<std::string_view>{"prod", "name"}));
}
