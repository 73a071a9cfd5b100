// Which isolation tier this host allows, found by trying it: one real run of /bin/true (or
// `probe_executable`) through runProcess at that tier. Done once at start-up.
#pragma once

#include <string>
#include <vector>

#include "sandbox/isolation.h"

namespace sandbox {

struct TierChoice {
  Tier tier = Tier::kNone;
  std::vector<std::string> facilities;  // what the chosen tier enforces here
  bool ok = false;                      // false: the requested tier (or, for auto, none) works
  std::string problem;                  // why not: each tier tried, with the failing call and fix
};

// requested: "auto" (strongest that works), "namespaces", "landlock" or "none".
// `isolation` supplies ids and cgroup limits; its tier and filesystem are set per probe.
TierChoice chooseTier(const std::string& requested, const Isolation& isolation);

// What `tier` enforces on this host with `isolation`'s limits (no probe run).
std::vector<std::string> facilitiesOf(Tier tier, const Isolation& isolation);

}  // namespace sandbox
