// The end-to-end suite's check that no secret leaves the agent: every file the agent wrote
// (its state directory, its log) and every byte it answered or sent that a test remembered
// (bodies and headers, event streams, webhooks) is searched for every secret a test handed over,
// raw and in the encoded forms a leak would take: base64 and base64url, percent-encoded, and
// JSON-escaped.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <Poco/Base64Encoder.h>
#include <Poco/URI.h>
#include <nlohmann/json.hpp>

#include "support/server_process.h"

namespace testsupport {

class SecretScan {
 public:
  void addSecret(const std::string& secret) { secrets_.push_back(secret); }
  void remember(const std::string& bytes) { received_.push_back(bytes); }

  // A secret as it may appear when encoded: raw, JSON-escaped, percent-encoded, and base64 (and
  // base64url) at each of the three alignments a secret can have inside a longer encoded text
  // (only the groups that hold nothing but the secret's bytes).
  static std::vector<std::string> encodedForms(const std::string& secret) {
    std::vector<std::string> forms{secret};
    const std::string json = nlohmann::json(secret).dump();
    forms.push_back(json.substr(1, json.size() - 2));
    std::string percent;
    Poco::URI::encode(secret, "!#$&'()*+,/:;=?@[]", percent);
    forms.push_back(percent);
    for (size_t offset = 0; offset < 3; ++offset) {
      std::ostringstream out;
      Poco::Base64Encoder encoder(out, Poco::BASE64_NO_PADDING);
      encoder.rdbuf()->setLineLength(0);
      encoder << std::string(offset, '\0') << secret;
      encoder.close();
      std::string text = out.str();
      // The first group mixes in the bytes before; the last may mix in the bytes after.
      const size_t skip = offset == 0 ? 0 : 4;
      if (text.size() < skip + 8 + 4) continue;
      text = text.substr(skip, (text.size() - skip) / 4 * 4 - 4);
      forms.push_back(text);
      std::string url_safe = text;
      std::replace(url_safe.begin(), url_safe.end(), '+', '-');
      std::replace(url_safe.begin(), url_safe.end(), '/', '_');
      forms.push_back(url_safe);
    }
    std::sort(forms.begin(), forms.end());
    forms.erase(std::unique(forms.begin(), forms.end()), forms.end());
    return forms;
  }

  void expectNoSecretIn(const std::string& content, const std::string& where) const {
    for (const auto& secret : secrets_) {
      if (secret.size() < 8) continue;  // too short to tell from ordinary text
      for (const auto& form : encodedForms(secret)) {
        EXPECT_EQ(content.find(form), std::string::npos) << where << " holds a secret (as '" << form << "')";
      }
    }
  }

  // Everything remembered, every answer httpRequest got from an agent since the last scan, and
  // every file under `dir` but the test's own copies of secrets (files named *secret* directly
  // in `dir`, handed to the agent as files).
  void expectClean(const std::filesystem::path& dir) const {
    for (size_t i = 0; i < received_.size(); ++i) expectNoSecretIn(received_[i], "answer #" + std::to_string(i + 1));
    const auto answers = takeAgentAnswers();
    for (size_t i = 0; i < answers.size(); ++i) {
      expectNoSecretIn(answers[i], "HTTP answer of the agent #" + std::to_string(i + 1));
    }
    if (!std::filesystem::exists(dir)) return;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
      if (!entry.is_regular_file()) continue;
      if (entry.path().parent_path() == dir && entry.path().filename().string().find("secret") != std::string::npos) {
        continue;
      }
      std::ifstream in(entry.path(), std::ios::binary);
      const std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      expectNoSecretIn(content, entry.path().string());
    }
  }

 private:
  std::vector<std::string> secrets_;
  std::vector<std::string> received_;
};

}  // namespace testsupport
