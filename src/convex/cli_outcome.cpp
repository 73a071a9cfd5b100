#include "convex/cli_outcome.h"

#include <algorithm>
#include <sstream>
#include <vector>

namespace da::convex {

namespace {

constexpr std::string_view kSuccessMarker = "✔";
constexpr std::string_view kFailureMarker = "✖";
constexpr std::string_view kBannerMarker = "▌";
constexpr std::string_view kBannerUrlMarker = "└─ ";
constexpr std::string_view kDeploySuccess = "Deployed Convex functions to ";
constexpr std::string_view kDevSuccess = "Convex functions ready!";
constexpr size_t kMaxMessageBytes = 600;

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    out.push_back(line);
  }
  return out;
}

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

// The line as a reader sees where it begins: indentation and carriage returns left by
// spinners do not hide a marker.
std::string_view visibleStart(std::string_view line) {
  size_t start = line.find_first_not_of(" \t\r");
  return start == std::string_view::npos ? std::string_view() : line.substr(start);
}

// Removes `prefix` from the front of `text`; false (and `text` untouched) when it is not there.
bool consumePrefix(std::string_view& text, std::string_view prefix) {
  if (!text.starts_with(prefix)) return false;
  text.remove_prefix(prefix.size());
  return true;
}

bool consumeSpaces(std::string_view& text) {
  size_t count = text.find_first_not_of(' ');
  if (count == 0) return false;
  text.remove_prefix(count == std::string_view::npos ? text.size() : count);
  return true;
}

bool isDigit(char c) { return c >= '0' && c <= '9'; }

bool consumeDigits(std::string_view& text, size_t min_count, size_t max_count) {
  size_t count = 0;
  while (count < text.size() && count < max_count && isDigit(text[count])) ++count;
  if (count < min_count) return false;
  text.remove_prefix(count);
  return true;
}

// `10:11:12`, or `10:11:12 AM` should the CLI ever format the time for a 12-hour locale.
bool consumeClockTime(std::string_view& text) {
  std::string_view rest = text;
  if (!consumeDigits(rest, 1, 2) || !consumePrefix(rest, ":") || !consumeDigits(rest, 2, 2) ||
      !consumePrefix(rest, ":") || !consumeDigits(rest, 2, 2)) {
    return false;
  }
  if (!consumePrefix(rest, " AM")) consumePrefix(rest, " PM");
  text = rest;
  return true;
}

// Only the CLI's own success line counts, so it must start the line: app code can make esbuild
// quote any text inside a warning ("Duplicate key \"✔ Convex functions ready!\"").
// `✔ 10:11:12 Convex functions ready! (613.67ms)`; the time and duration are optional.
bool isDevSuccessLine(std::string_view line) {
  std::string_view rest = visibleStart(line);
  if (!consumePrefix(rest, kSuccessMarker) || !consumeSpaces(rest)) return false;
  if (consumeClockTime(rest) && !consumeSpaces(rest)) return false;
  if (!consumePrefix(rest, kDevSuccess)) return false;
  return rest.empty() || rest.starts_with(" (");
}

// The deployment URL of `✔ Deployed Convex functions to <url>`, or nothing for any other line.
std::optional<std::string> deploySuccessUrl(std::string_view line) {
  std::string_view rest = visibleStart(line);
  if (!consumePrefix(rest, kSuccessMarker) || !consumeSpaces(rest) || !consumePrefix(rest, kDeploySuccess)) {
    return std::nullopt;
  }
  std::string_view url = rest.substr(0, rest.find_first_of(" \t"));
  if (!url.starts_with("http://") && !url.starts_with("https://")) return std::nullopt;
  return std::string(url);
}

// The URL of the target banner's `▌ └─ <url>` line, or an empty string for any other line.
std::string bannerUrl(std::string_view line) {
  std::string_view rest = visibleStart(line);
  if (!consumePrefix(rest, kBannerMarker)) return {};
  rest = visibleStart(rest);
  if (!consumePrefix(rest, kBannerUrlMarker)) return {};
  return std::string(rest.substr(0, rest.find_first_of(" \t")));
}

bool isFailureLine(std::string_view line) { return visibleStart(line).starts_with(kFailureMarker); }

std::string trimmed(std::string s) {
  size_t start = s.find_first_not_of(" \t");
  size_t end = s.find_last_not_of(" \t");
  s = start == std::string::npos ? std::string() : s.substr(start, end - start + 1);
  if (s.size() > kMaxMessageBytes) s = s.substr(0, kMaxMessageBytes) + "...";
  return s;
}

// The first line carrying a failure marker, with the lines that explain it.
std::string failureMessage(const std::vector<std::string>& all) {
  for (size_t i = 0; i < all.size(); ++i) {
    const std::string& line = all[i];
    if (contains(line, "✘ [ERROR]")) {
      // esbuild: the error, then a blank line and `    convex/file.ts:1:63:` with a code frame.
      std::string message = trimmed(line.substr(line.find("[ERROR]") + 8));
      for (size_t j = i + 1; j < all.size() && j <= i + 3; ++j) {
        std::string location = trimmed(all[j]);
        if (!location.empty() && contains(location, ":") && !contains(location, "│")) {
          return message + " at " + location.substr(0, location.find_last_of(':'));
        }
      }
      return message;
    }
  }
  std::string first_failure;
  for (size_t i = 0; i < all.size(); ++i) {
    const std::string& line = all[i];
    // A marker quoted inside some other line (an esbuild warning about app code) is not the CLI's.
    if (!isFailureLine(line)) continue;
    std::string message = trimmed(line.substr(line.find(kFailureMarker) + kFailureMarker.size()));
    // "✖ Error: Unable to start push to <url>" is followed by the line saying why.
    if (contains(message, "Unable to") && i + 1 < all.size() && !trimmed(all[i + 1]).empty()) {
      return trimmed(message + ": " + trimmed(all[i + 1]));
    }
    if (first_failure.empty()) first_failure = message;
  }
  if (!first_failure.empty()) return first_failure;
  for (const auto& line : all) {
    if (contains(line, "Error fetching") || contains(line, "Error:")) return trimmed(line);
  }
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    if (!trimmed(*it).empty()) return trimmed(*it);
  }
  return "the Convex CLI printed nothing";
}

std::string failureReason(const std::string& text) {
  if (contains(text, "✘ [ERROR]")) return "bundle_error";
  if (contains(text, "TypeScript typecheck via")) return "typecheck_failed";
  if (contains(text, "Schema validation failed")) return "schema_validation_failed";
  if (contains(text, "is too old. Convex requires")) return "node_too_old";
  if (contains(text, "add `convex` to your package.json")) return "missing_convex_dependency";
  if (contains(text, "/api/deployment/url_for_key") ||
      contains(text, "/api/deployment/team_and_project_for_key") ||
      contains(text, "Please set CONVEX_DEPLOY_KEY")) {
    return "deploy_key_rejected";
  }
  if (contains(text, "Unable to start push") || contains(text, "Unable to finish push") ||
      contains(text, "Unable to pull deployment config") || contains(text, "Error fetching")) {
    return "push_rejected";
  }
  if (contains(text, "Schema was overwritten by another push")) return "push_raced";
  if (contains(text, "fetch failed")) return "network_error";
  return "cli_failed";
}

}  // namespace

std::string stripAnsi(std::string_view text) {
  // By hand rather than with std::regex, whose libstdc++ engine recurses once per repeated
  // character and overflows the stack on a long parameter run in untrusted output.
  // Removes what `\x1B\[[0-9;?]*[ -/]*[@-~]` matches: a CSI sequence with its final byte.
  auto isParameter = [](char c) { return (c >= '0' && c <= '9') || c == ';' || c == '?'; };
  auto isIntermediate = [](char c) { return c >= ' ' && c <= '/'; };
  auto isFinal = [](char c) { return c >= '@' && c <= '~'; };
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    if (text[pos] == '\x1B' && pos + 1 < text.size() && text[pos + 1] == '[') {
      size_t end = pos + 2;
      while (end < text.size() && isParameter(text[end])) ++end;
      while (end < text.size() && isIntermediate(text[end])) ++end;
      if (end < text.size() && isFinal(text[end])) {
        pos = end + 1;
        continue;
      }
    }
    // Not a complete sequence: the scan above stopped before any later escape byte, so resuming
    // at the next character keeps the whole pass linear.
    out.push_back(text[pos]);
    ++pos;
  }
  return out;
}

CliOutcome judgeCliRun(Target target, std::optional<int> exit_code, std::string_view output) {
  const std::string text = stripAnsi(output);
  const auto all = lines(text);
  CliOutcome outcome;

  std::optional<size_t> success_line;
  std::string success_url;
  for (size_t i = 0; i < all.size(); ++i) {
    const std::string& line = all[i];
    if (target == Target::kProd) {
      if (auto url = deploySuccessUrl(line)) {
        success_line = i;
        success_url = *url;
      }
    }
    if (target == Target::kDev && isDevSuccessLine(line)) success_line = i;
    if (outcome.deployment_url.empty()) outcome.deployment_url = bannerUrl(line);
  }
  if (!success_url.empty()) outcome.deployment_url = success_url;

  // A failure after the success line means the success line was not the CLI's last word: a
  // spoofed one printed during bundling, followed by a rejected push.
  bool failed_after_success =
      success_line && std::any_of(all.begin() + static_cast<std::ptrdiff_t>(*success_line) + 1, all.end(),
                                  [](const std::string& line) { return isFailureLine(line); });

  if (exit_code == 0 && success_line && !failed_after_success) {
    outcome.succeeded = true;
    return outcome;
  }
  DeployError error{failureReason(text), failureMessage(all)};
  if (exit_code == 0) {
    // The CLI gave up on the push but still exited 0 (dev --once after a fatal push error).
    error.message = "the CLI exited 0 but did not complete the push: " + error.message;
    if (error.reason == "cli_failed") error.reason = "push_not_completed";
  }
  outcome.error = error;
  return outcome;
}

}  // namespace da::convex
