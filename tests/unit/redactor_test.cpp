#include <gtest/gtest.h>

#include <random>
#include <regex>
#include <string>
#include <vector>

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

TEST(Redactor, KeepsTheDeploymentNameOfEveryKeyType) {
  for (std::string type : {"prod", "dev", "preview", "project", "custom", "team"}) {
    const std::string prefix = type + ":team-a:happy-otter-123";
    auto out = da::redactKeyShapes("x " + prefix + "|abc123 y");
    EXPECT_EQ(out, "x " + prefix + "|[REDACTED] y") << type;
  }
}

TEST(Redactor, LeavesShortValuesAfterABarAlone) {
  // A key needs 6+ secret characters, a bare bar 20+: markdown tables and shell pipes survive.
  EXPECT_EQ(da::redactKeyShapes("dev:name|abcde"), "dev:name|abcde");
  EXPECT_EQ(da::redactKeyShapes("| column | other |"), "| column | other |");
  EXPECT_EQ(da::redactKeyShapes("a|abcdefghijklmnopqrs"), "a|abcdefghijklmnopqrs");
  EXPECT_EQ(da::redactKeyShapes("a|abcdefghijklmnopqrst"), "a|[REDACTED]");
  // The key type is case-sensitive and needs a name before the bar.
  EXPECT_EQ(da::redactKeyShapes("DEV:name|abcdef"), "DEV:name|abcdef");
  EXPECT_EQ(da::redactKeyShapes("dev:|abcdef"), "dev:|abcdef");
}

TEST(Redactor, ReplacesLegacyKeysOnlyInTheirExactShape) {
  EXPECT_EQ(da::redactKeyShapes("k=bold-hyena-681|01c2ab"), "k=bold-hyena-681|[REDACTED]");
  EXPECT_EQ(da::redactKeyShapes("bold-hyena|01c2ab"), "bold-hyena|01c2ab");
  EXPECT_EQ(da::redactKeyShapes("bold-Hyena-681|01c2ab"), "bold-Hyena-681|01c2ab");
}

TEST(Redactor, ReplacesAuthorizationValuesInAnyCaseAndQuoting) {
  EXPECT_EQ(da::redactKeyShapes("AUTHORIZATION = 'bearer   tok.en:1|2'"), "AUTHORIZATION = 'bearer   [REDACTED]'");
  EXPECT_EQ(da::redactKeyShapes("authorization\"\t:\t\"CONVEX abcdef\""), "authorization\"\t:\t\"CONVEX [REDACTED]\"");
  // Too short, no space after the scheme, or another scheme: left alone.
  EXPECT_EQ(da::redactKeyShapes("Authorization: Bearer abcde"), "Authorization: Bearer abcde");
  EXPECT_EQ(da::redactKeyShapes("Authorization: Bearerabcdefgh"), "Authorization: Bearerabcdefgh");
  EXPECT_EQ(da::redactKeyShapes("Authorization: Basic abcdefgh"), "Authorization: Basic abcdefgh");
}

namespace {

// The shape scan replaced std::regex, which recursed once per character and crashed the agent
// on long lines. It must match exactly what these expressions matched, applied in this order.
std::string redactKeyShapesByRegex(const std::string& text) {
  static const std::regex kKey(
      R"(((?:prod|dev|preview|project|custom|team):[A-Za-z0-9_:\-]+|[a-z]+-[a-z]+-[0-9]+)\|[A-Za-z0-9+/=_\-]{6,})");
  static const std::regex kAfterBar(R"(\|[A-Za-z0-9+/=_\-]{20,})");
  static const std::regex kAuthHeader(
      R"((authorization["']?\s*[:=]\s*["']?(?:Bearer|Convex)\s+)[A-Za-z0-9+/=_\-|:.]{6,})", std::regex::icase);
  std::string out = std::regex_replace(text, kKey, "$1|[REDACTED]");
  out = std::regex_replace(out, kAfterBar, "|[REDACTED]");
  return std::regex_replace(out, kAuthHeader, "$1[REDACTED]");
}

}  // namespace

TEST(Redactor, MatchesTheRegularExpressionsItReplacedOnShortInputs) {
  const std::vector<std::string> pieces = {
      "prod", "dev", "preview", "project", "custom", "team", ":", "|", "-", "a", "Z", "7", "_", "+", "/", "=",
      ".", " ", "\t", "\n", "\"", "'", "authorization", "AuthoriZation", "Bearer", "bEARER", "Convex", "abcdef",
      "x-y-1", "[", "\xc3\xa9", "aaaaaaaaaaaaaaaaaaaa"};
  std::mt19937 generator(20240611);
  for (int round = 0; round < 20000; ++round) {
    std::string text;
    for (size_t count = generator() % 12; count > 0; --count) text += pieces[generator() % pieces.size()];
    ASSERT_EQ(da::redactKeyShapes(text), redactKeyShapesByRegex(text)) << "input: " << text;
  }
}

namespace {

constexpr size_t kHugeLine = 2 * 1024 * 1024;
constexpr size_t kPathologicalBytes = 1024 * 1024;

std::string repeated(std::string_view piece, size_t total_bytes) {
  std::string out;
  out.reserve(total_bytes + piece.size());
  while (out.size() < total_bytes) out += piece;
  return out;
}

}  // namespace

TEST(Redactor, SurvivesHugeRunsAfterEachPrefix) {
  const std::string letters(kHugeLine, 'a');
  for (std::string prefix : {"dev:", "prod:team:", "bold-hyena-681", "|", "authorization: Bearer "}) {
    // With nothing after the run, only the bare bar and the header count as a secret.
    auto alone = da::redactKeyShapes(prefix + letters);
    bool is_secret = prefix == "|" || prefix.starts_with("authorization");
    EXPECT_EQ(alone, is_secret ? prefix + std::string(da::kRedacted) : prefix + letters) << prefix;
  }
  // A huge key name, then a huge secret.
  auto key = da::redactKeyShapes("dev:" + letters + "|" + letters + " tail");
  EXPECT_EQ(key, "dev:" + letters + "|[REDACTED] tail");
  auto legacy = da::redactKeyShapes("bold-hyena-681|" + letters);
  EXPECT_EQ(legacy, "bold-hyena-681|[REDACTED]");
  auto header = da::redactKeyShapes("Authorization:" + std::string(kHugeLine, ' ') + "Convex " + letters);
  EXPECT_EQ(header, "Authorization:" + std::string(kHugeLine, ' ') + "Convex [REDACTED]");
}

TEST(Redactor, FinishesOnRepeatedPrefixes) {
  for (std::string piece : {"dev:", "|", "||a", "authorization:", "Authorization: Bearer ", "a-b-1", "dev:x|abcde",
                            "|abcdefghijklmnopqrstuvwxyz", "\"authorization\"=\""}) {
    const std::string text = repeated(piece, kPathologicalBytes);
    auto out = da::redactKeyShapes(text);
    EXPECT_FALSE(out.empty()) << piece;
  }
  // Every repeated secret is replaced, however many there are.
  auto keys = da::redactKeyShapes(repeated("dev:x|abcdef ", kPathologicalBytes));
  EXPECT_EQ(keys.find("abcdef"), std::string::npos);
}

TEST(Redactor, ReplacesAManyTimesRepeatedSecret) {
  const std::string secret = "abcdefghij";
  const size_t copies = kHugeLine / secret.size();
  da::Redactor redactor;
  redactor.addSecret(secret);
  auto out = redactor.redact(repeated(secret, copies * secret.size()));
  EXPECT_EQ(out, repeated(da::kRedacted, copies * da::kRedacted.size()));
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
