#include "sandbox/rlimits.h"

#include <cerrno>

namespace sandbox::internal {

void RlimitPlan::add(int resource, const char* name, const char* limits_field, rlim_t soft,
                     rlim_t hard) {
  settings_[count_++] = RlimitSetting{resource, name, limits_field, soft, hard};
}

RlimitPlan RlimitPlan::fromLimits(const Limits& limits) {
  RlimitPlan plan;
  plan.add(RLIMIT_CORE, "RLIMIT_CORE", "(always 0)", 0, 0);
  if (limits.cpuSeconds() != 0) {
    // Hard limit one second above the soft one: the child first gets SIGXCPU, which names the
    // cause in RunResult; only if it ignores that does the kernel send SIGKILL.
    plan.add(RLIMIT_CPU, "RLIMIT_CPU", "Limits::cpuSeconds", limits.cpuSeconds(),
             limits.cpuSeconds() + 1);
  }
  if (limits.addressSpaceBytes() != 0) {
    plan.add(RLIMIT_AS, "RLIMIT_AS", "Limits::addressSpaceBytes", limits.addressSpaceBytes(),
             limits.addressSpaceBytes());
  }
  if (limits.fileSizeBytes() != 0) {
    plan.add(RLIMIT_FSIZE, "RLIMIT_FSIZE", "Limits::fileSizeBytes", limits.fileSizeBytes(),
             limits.fileSizeBytes());
  }
  if (limits.openFiles() != 0) {
    plan.add(RLIMIT_NOFILE, "RLIMIT_NOFILE", "Limits::openFiles", limits.openFiles(),
             limits.openFiles());
  }
  if (limits.processes() != 0) {
    plan.add(RLIMIT_NPROC, "RLIMIT_NPROC", "Limits::processes", limits.processes(),
             limits.processes());
  }
  return plan;
}

int applyRlimits(const RlimitPlan& plan, size_t* failed_index) {
  for (size_t i = 0; i < plan.size(); ++i) {
    const rlimit value{plan[i].soft, plan[i].hard};
    if (::setrlimit(plan[i].resource, &value) != 0) {
      *failed_index = i;
      return errno;
    }
  }
  return 0;
}

}  // namespace sandbox::internal
