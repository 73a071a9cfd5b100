// Resource limits of one run, turned into setrlimit() calls before fork so that the child
// only walks a fixed array (no allocation between fork and exec).
#pragma once

#include <array>
#include <cstddef>
#include <sys/resource.h>

#include "sandbox/process.h"

namespace sandbox::internal {

struct RlimitSetting {
  int resource;      // RLIMIT_*
  const char* name;  // "RLIMIT_CPU", for error messages
  const char* limits_field;  // the Limits builder that sets it, for hints
  rlim_t soft;
  rlim_t hard;
};

class RlimitPlan {
 public:
  // RLIMIT_CORE is always 0 (a core of an untrusted tool is a disk-filling hazard and may hold
  // secrets from its environment); every other limit only when its Limits field is non-zero.
  static RlimitPlan fromLimits(const Limits& limits);

  size_t size() const { return count_; }
  const RlimitSetting& operator[](size_t i) const { return settings_[i]; }

 private:
  void add(int resource, const char* name, const char* limits_field, rlim_t soft, rlim_t hard);

  std::array<RlimitSetting, 6> settings_{};
  size_t count_ = 0;
};

// Async-signal-safe. Applies every setting in order; on failure returns errno and stores the
// index of the failing setting in *failed_index. Returns 0 on success.
int applyRlimits(const RlimitPlan& plan, size_t* failed_index);

}  // namespace sandbox::internal
