// Whether an app's installed `convex` library fits the agent's pinned CLI. The CLI bundles the
// app's library into every module it pushes, so the two must agree on the wire format; Convex
// keeps that stable within a major version.
#pragma once

#include <string>

namespace da::convex {

enum class VersionFit {
  kSame,          // identical versions
  kMinorDiffers,  // same major: pushed, with a warning in the report
  kMajorDiffers,  // refused as convex_version_mismatch
};

VersionFit fitOfLibraryToCli(const std::string& app_library_version, const std::string& cli_version);

// "1.49.0" -> "1"; "" for a version without digits before its first dot.
std::string majorVersionOf(const std::string& version);

}  // namespace da::convex
