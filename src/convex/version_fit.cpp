#include "convex/version_fit.h"

#include <cctype>

namespace da::convex {

std::string majorVersionOf(const std::string& version) {
  std::string major;
  for (char c : version) {
    if (!std::isdigit(static_cast<unsigned char>(c))) break;
    major += c;
  }
  return major;
}

VersionFit fitOfLibraryToCli(const std::string& app_library_version, const std::string& cli_version) {
  if (app_library_version == cli_version) return VersionFit::kSame;
  const std::string app_major = majorVersionOf(app_library_version);
  if (app_major.empty() || app_major != majorVersionOf(cli_version)) return VersionFit::kMajorDiffers;
  return VersionFit::kMinorDiffers;
}

}  // namespace da::convex
