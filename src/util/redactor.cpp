#include "util/redactor.h"

#include <algorithm>
#include <regex>

namespace da {

Redactor::Redactor(const Redactor& other) {
  std::lock_guard lock(other.mutex_);
  secrets_ = other.secrets_;
}

Redactor& Redactor::operator=(const Redactor& other) {
  if (this != &other) {
    std::scoped_lock lock(mutex_, other.mutex_);
    secrets_ = other.secrets_;
  }
  return *this;
}

void Redactor::addSecret(std::string value) {
  if (value.size() < 6) return;
  // A tool may print only part of a `type:name|secret` key (esbuild elides the start of long
  // source lines in its code frames), so the secret after the bar is registered on its own.
  if (size_t bar = value.rfind('|'); bar != std::string::npos && value.size() - bar - 1 >= 6) {
    addSecret(value.substr(bar + 1));
  }
  std::lock_guard lock(mutex_);
  if (std::find(secrets_.begin(), secrets_.end(), value) == secrets_.end()) {
    secrets_.push_back(std::move(value));
    // Longest first, so a secret that contains another is replaced whole.
    std::sort(secrets_.begin(), secrets_.end(),
              [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  }
}

std::string Redactor::redact(std::string_view text) const {
  std::string out(text);
  {
    std::lock_guard lock(mutex_);
    for (const auto& secret : secrets_) {
      for (size_t pos = out.find(secret); pos != std::string::npos;
           pos = out.find(secret, pos + kRedacted.size())) {
        out.replace(pos, secret.size(), kRedacted);
      }
    }
  }
  return redactKeyShapes(out);
}

std::string redactKeyShapes(std::string_view text) {
  // `prod:name|secret`, `project:team:proj|secret`, legacy `name|hex`: keep the part before
  // the bar (it names the deployment and helps debugging), drop the secret after it.
  static const std::regex kKey(
      R"(((?:prod|dev|preview|project|custom|team):[A-Za-z0-9_:\-]+|[a-z]+-[a-z]+-[0-9]+)\|[A-Za-z0-9+/=_\-]{6,})");
  // Only in an Authorization header: "Convex functions ready" must survive.
  static const std::regex kAuthHeader(
      R"((authorization["']?\s*[:=]\s*["']?(?:Bearer|Convex)\s+)[A-Za-z0-9+/=_\-|:.]{6,})",
      std::regex::icase);
  // And any long base64-ish run right after a bar, even when the part naming the key was
  // cut off: "...er-123|eyJ2MiI6..." is still a key.
  static const std::regex kAfterBar(R"(\|[A-Za-z0-9+/=_\-]{20,})");
  std::string out = std::regex_replace(std::string(text), kKey, "$1|[REDACTED]");
  out = std::regex_replace(out, kAfterBar, "|[REDACTED]");
  return std::regex_replace(out, kAuthHeader, "$1[REDACTED]");
}

}  // namespace da
