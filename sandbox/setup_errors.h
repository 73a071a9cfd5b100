// Turns a failed syscall into a RunResult::reason that names the call, its arguments, the
// errno and what to do about it.
#pragma once

#include <string>
#include <string_view>

#include "sandbox/child.h"
#include "sandbox/process.h"
#include "sandbox/rlimits.h"
#include "sandbox/syscall_error.h"

namespace sandbox::internal {


// For a failure in the parent before or at fork (pipe2, fork...).
std::string describeSupervisorFailure(std::string_view call, int error);

class MountPlan;

// For a report the child sent over the error pipe. `mounts`: the namespaces tier's plan, if any.
std::string describeChildSetupFailure(const SetupFailureReport& report, const ProcessSpec& spec,
                                      const RlimitPlan& rlimits, const MountPlan* mounts = nullptr);

// "SIGXFSZ (File size limit exceeded)" plus, for limit signals, which Limits field caused it.
std::string describeSignal(int signal, const Limits& limits);

}  // namespace sandbox::internal
