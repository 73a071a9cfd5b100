#include "convex/cli_outcome.h"

#include <regex>
#include <sstream>
#include <vector>

namespace da::convex {

namespace {

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

std::string trimmed(std::string s) {
  size_t start = s.find_first_not_of(" \t");
  size_t end = s.find_last_not_of(" \t");
  s = start == std::string::npos ? std::string() : s.substr(start, end - start + 1);
  if (s.size() > kMaxMessageBytes) s = s.substr(0, kMaxMessageBytes) + "...";
  return s;
}

std::string urlAfter(const std::string& line, std::string_view marker) {
  size_t pos = line.find(marker);
  if (pos == std::string::npos) return {};
  std::string rest = line.substr(pos + marker.size());
  size_t end = rest.find_first_of(" \t");
  return end == std::string::npos ? rest : rest.substr(0, end);
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
    if (!contains(line, "✖")) continue;
    std::string message = trimmed(line.substr(line.find("✖") + std::string_view("✖").size()));
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
  static const std::regex kAnsi("\x1B\\[[0-9;?]*[ -/]*[@-~]");
  return std::regex_replace(std::string(text), kAnsi, "");
}

CliOutcome judgeCliRun(Target target, std::optional<int> exit_code, std::string_view output) {
  const std::string text = stripAnsi(output);
  const auto all = lines(text);
  CliOutcome outcome;

  std::string success_url;
  bool saw_success = false;
  for (const auto& line : all) {
    if (target == Target::kProd && contains(line, "✔") && contains(line, kDeploySuccess)) {
      saw_success = true;
      success_url = urlAfter(line, kDeploySuccess);
    }
    if (target == Target::kDev && contains(line, "✔") && contains(line, kDevSuccess)) {
      saw_success = true;
    }
    if (outcome.deployment_url.empty() && contains(line, "└─ ")) {
      outcome.deployment_url = urlAfter(line, "└─ ");
    }
  }
  if (!success_url.empty()) outcome.deployment_url = success_url;

  if (exit_code == 0 && saw_success) {
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
