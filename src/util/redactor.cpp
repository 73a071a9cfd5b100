#include "util/redactor.h"

#include <algorithm>
#include <array>

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

namespace {

// Copies `text` with every occurrence of `secret` replaced. Building a new string keeps this
// linear: replacing in place shifts the whole tail once per occurrence, which is quadratic on
// output that repeats a secret many times.
std::string replaceAll(const std::string& text, const std::string& secret) {
  size_t found = text.find(secret);
  if (found == std::string::npos) return text;
  std::string out;
  out.reserve(text.size());
  size_t copied_up_to = 0;
  for (; found != std::string::npos; found = text.find(secret, copied_up_to)) {
    out.append(text, copied_up_to, found - copied_up_to);
    out.append(kRedacted);
    copied_up_to = found + secret.size();
  }
  out.append(text, copied_up_to, std::string::npos);
  return out;
}

}  // namespace

std::string Redactor::redact(std::string_view text) const {
  std::string out(text);
  {
    std::lock_guard lock(mutex_);
    for (const auto& secret : secrets_) out = replaceAll(out, secret);
  }
  return redactKeyShapes(out);
}

// The shapes are matched by hand rather than with std::regex: libstdc++'s regex engine recurses
// once per repeated character, so a long run of key characters in untrusted npm or CLI output
// overflowed the stack. Each pass below is a single left-to-right scan that never revisits a
// character more than a constant number of times, and reproduces what these leftmost-first
// regular expressions matched, applied one after the other:
//   1. ((?:prod|dev|preview|project|custom|team):[A-Za-z0-9_:\-]+|[a-z]+-[a-z]+-[0-9]+)\|[A-Za-z0-9+/=_\-]{6,}
//   2. \|[A-Za-z0-9+/=_\-]{20,}
//   3. (authorization["']?\s*[:=]\s*["']?(?:Bearer|Convex)\s+)[A-Za-z0-9+/=_\-|:.]{6,}   (case-insensitive)
namespace {

constexpr size_t kMinKeySecretLength = 6;
constexpr size_t kMinBareSecretLength = 20;
constexpr size_t kMinHeaderTokenLength = 6;

bool isLower(char c) { return c >= 'a' && c <= 'z'; }
bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isAsciiLetterOrDigit(char c) { return isLower(c) || (c >= 'A' && c <= 'Z') || isDigit(c); }

bool isKeyNameChar(char c) { return isAsciiLetterOrDigit(c) || c == '_' || c == ':' || c == '-'; }

bool isSecretChar(char c) {
  return isAsciiLetterOrDigit(c) || c == '+' || c == '/' || c == '=' || c == '_' || c == '-';
}

bool isHeaderTokenChar(char c) { return isSecretChar(c) || c == '|' || c == ':' || c == '.'; }

// What `\s` matches in std::regex under the "C" locale.
bool isRegexSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

char asciiLower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool startsWithIgnoringCase(std::string_view text, size_t pos, std::string_view lower_word) {
  if (text.size() - pos < lower_word.size()) return false;
  for (size_t i = 0; i < lower_word.size(); ++i) {
    if (asciiLower(text[pos + i]) != lower_word[i]) return false;
  }
  return true;
}

size_t secretRunEnd(std::string_view text, size_t from) {
  while (from < text.size() && isSecretChar(text[from])) ++from;
  return from;
}

// Whether some start in [earliest, bar) begins a `type:name` key prefix ending right at `bar`.
// The prefix can only use key-name characters, so it lies inside the run of them before the bar.
bool typedKeyPrefixEndsAt(std::string_view text, size_t earliest, size_t bar) {
  static constexpr std::array<std::string_view, 6> kKeyTypes = {"prod", "dev", "preview",
                                                                "project", "custom", "team"};
  size_t run_start = bar;
  while (run_start > earliest && isKeyNameChar(text[run_start - 1])) --run_start;
  for (size_t start = run_start; start < bar; ++start) {
    for (std::string_view type : kKeyTypes) {
      size_t colon = start + type.size();
      // The name after the colon must not be empty.
      if (colon + 1 < bar && text.compare(start, type.size(), type) == 0 && text[colon] == ':') return true;
    }
  }
  return false;
}

// Whether some start in [earliest, bar) begins a legacy `word-word-123` prefix ending at `bar`.
// Reading backwards from the bar, each part's extent is forced, so there is nothing to retry.
bool legacyKeyPrefixEndsAt(std::string_view text, size_t earliest, size_t bar) {
  size_t pos = bar;
  auto takeRun = [&](bool (*belongs)(char)) {
    size_t end = pos;
    while (pos > earliest && belongs(text[pos - 1])) --pos;
    return pos < end;
  };
  auto takeDash = [&] {
    if (pos > earliest && text[pos - 1] == '-') {
      --pos;
      return true;
    }
    return false;
  };
  return takeRun(isDigit) && takeDash() && takeRun(isLower) && takeDash() && takeRun(isLower);
}

std::string redactTypedAndLegacyKeys(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t copied_up_to = 0;
  // A match may start no earlier than where the previous one ended, nor before the previous
  // bar: key prefixes contain no bar.
  size_t earliest_prefix_start = 0;
  for (size_t bar = text.find('|'); bar != std::string_view::npos; bar = text.find('|', bar + 1)) {
    size_t secret_end = secretRunEnd(text, bar + 1);
    bool long_enough = secret_end - (bar + 1) >= kMinKeySecretLength;
    if (long_enough && (typedKeyPrefixEndsAt(text, earliest_prefix_start, bar) ||
                        legacyKeyPrefixEndsAt(text, earliest_prefix_start, bar))) {
      out.append(text.substr(copied_up_to, bar + 1 - copied_up_to));
      out.append(kRedacted);
      copied_up_to = secret_end;
      earliest_prefix_start = secret_end;
    } else {
      earliest_prefix_start = bar + 1;
    }
  }
  out.append(text.substr(copied_up_to));
  return out;
}

std::string redactLongSecretsAfterBars(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t copied_up_to = 0;
  for (size_t bar = text.find('|'); bar != std::string_view::npos; bar = text.find('|', bar + 1)) {
    size_t secret_end = secretRunEnd(text, bar + 1);
    if (secret_end - (bar + 1) >= kMinBareSecretLength) {
      out.append(text.substr(copied_up_to, bar + 1 - copied_up_to));
      out.append(kRedacted);
      copied_up_to = secret_end;
    }
    // Secret characters include no bar, so the next bar is at or after secret_end either way.
    bar = secret_end - 1;
  }
  out.append(text.substr(copied_up_to));
  return out;
}

// Where the token of an Authorization header starting at `start` begins, or npos.
size_t authorizationTokenStart(std::string_view text, size_t start) {
  size_t pos = start + std::string_view("authorization").size();
  auto skipSpaces = [&] {
    while (pos < text.size() && isRegexSpace(text[pos])) ++pos;
  };
  auto skipOptionalQuote = [&] {
    if (pos < text.size() && (text[pos] == '"' || text[pos] == '\'')) ++pos;
  };
  skipOptionalQuote();
  skipSpaces();
  if (pos >= text.size() || (text[pos] != ':' && text[pos] != '=')) return std::string_view::npos;
  ++pos;
  skipSpaces();
  skipOptionalQuote();
  if (startsWithIgnoringCase(text, pos, "bearer") || startsWithIgnoringCase(text, pos, "convex")) {
    pos += 6;
  } else {
    return std::string_view::npos;
  }
  size_t spaces_start = pos;
  skipSpaces();
  return pos > spaces_start ? pos : std::string_view::npos;
}

std::string redactAuthorizationTokens(std::string_view text) {
  constexpr std::string_view kHeader = "authorization";
  std::string out;
  out.reserve(text.size());
  size_t copied_up_to = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    if (asciiLower(text[pos]) != kHeader[0] || !startsWithIgnoringCase(text, pos, kHeader)) {
      ++pos;
      continue;
    }
    size_t token_start = authorizationTokenStart(text, pos);
    if (token_start == std::string_view::npos) {
      // "authorization" has no border, so no later match can start inside this occurrence.
      pos += kHeader.size();
      continue;
    }
    size_t token_end = token_start;
    while (token_end < text.size() && isHeaderTokenChar(text[token_end])) ++token_end;
    if (token_end - token_start < kMinHeaderTokenLength) {
      pos += kHeader.size();
      continue;
    }
    out.append(text.substr(copied_up_to, token_start - copied_up_to));
    out.append(kRedacted);
    copied_up_to = token_end;
    pos = token_end;
  }
  out.append(text.substr(copied_up_to));
  return out;
}

}  // namespace

std::string redactKeyShapes(std::string_view text) {
  // `prod:name|secret`, `project:team:proj|secret`, legacy `name|hex`: keep the part before
  // the bar (it names the deployment and helps debugging), drop the secret after it.
  std::string out = redactTypedAndLegacyKeys(text);
  // And any long base64-ish run right after a bar, even when the part naming the key was
  // cut off: "...er-123|eyJ2MiI6..." is still a key.
  out = redactLongSecretsAfterBars(out);
  // Only in an Authorization header: "Convex functions ready" must survive.
  return redactAuthorizationTokens(out);
}

}  // namespace da
