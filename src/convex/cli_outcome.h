// Decides what a Convex CLI run did from its output, not its exit code alone:
// `convex dev --once` exits 0 after a 401/403 on start_push/finish_push, a 404 after retries,
// or a raceDetected schema wait (convex 1.49.0 `watchAndPush` breaks out of its loop and
// `devAgainstDeployment` exits 0). Only the success line proves that finish_push happened.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "report/deploy_report.h"

namespace da::convex {

struct CliOutcome {
  bool succeeded = false;
  std::string deployment_url;          // as the CLI printed it
  std::optional<DeployError> error;    // set when !succeeded
};

// `exit_code` is nullopt when the process did not exit on its own (timeout, signal).
CliOutcome judgeCliRun(Target target, std::optional<int> exit_code, std::string_view output);

// Removes ANSI escape sequences; the CLI colours some lines even when stderr is not a TTY.
std::string stripAnsi(std::string_view text);

}  // namespace da::convex
