// The e2e suite's secret scan must find a secret however a leak would encode it, or its clean
// result would mean nothing.
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <Poco/Base64Encoder.h>

#include <sstream>

#include "support/secret_scan.h"

namespace {

const std::string kSecret = "prod:happy-otter-123|eyJ2MiI6ImFiYy9kZWYrZ2hpPSJ9";

std::string base64(const std::string& text, bool url_safe) {
  std::ostringstream out;
  Poco::Base64Encoder encoder(out, url_safe ? Poco::BASE64_URL_ENCODING : 0);
  encoder.rdbuf()->setLineLength(0);
  encoder << text;
  encoder.close();
  return out.str();
}

void expectFound(const std::string& leak) {
  testsupport::SecretScan scan;
  scan.addSecret(kSecret);
  EXPECT_NONFATAL_FAILURE(scan.expectNoSecretIn("before " + leak + " after", "text"), "holds a secret");
}

TEST(SecretScan, FindsASecretRawJsonEscapedPercentEncodedAndBase64AtAnyAlignment) {
  expectFound(kSecret);
  expectFound(nlohmann::json{{"key", kSecret}}.dump());
  std::string percent;
  Poco::URI::encode(kSecret, "!#$&'()*+,/:;=?@[]", percent);
  expectFound("https://x.example/?k=" + percent);
  for (const std::string& prefix : {"", "a", "ab", "abc", "Authorization: Convex "}) {
    expectFound(base64(prefix + kSecret + "\n", false));
    expectFound(base64(prefix + kSecret, true));
  }
}

TEST(SecretScan, PassesTextWithoutTheSecret) {
  testsupport::SecretScan scan;
  scan.addSecret(kSecret);
  scan.expectNoSecretIn("prod:happy-otter-123|[redacted] " + base64("unrelated", false), "text");
}

}  // namespace
