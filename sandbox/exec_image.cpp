#include "sandbox/exec_image.h"

#include <string_view>

namespace sandbox::internal {

namespace {

bool hasNul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

// Returns the first reason the spec cannot be turned into an execve() call, or "".
std::string findProblem(const ProcessSpec& spec) {
  if (spec.executable.empty() || spec.executable.front() != '/') {
    return "ProcessSpec::executable \"" + spec.executable +
           "\" is not an absolute path; no PATH search is done. Fix: resolve it first "
           "(e.g. /usr/bin/npm)";
  }
  if (hasNul(spec.executable)) return "ProcessSpec::executable contains a NUL byte";
  if (spec.working_dir.empty()) {
    return "ProcessSpec::working_dir is empty. Fix: set it to an existing directory";
  }
  if (hasNul(spec.working_dir)) return "ProcessSpec::working_dir contains a NUL byte";
  for (const auto& arg : spec.args) {
    if (hasNul(arg)) return "an argument in ProcessSpec::args contains a NUL byte";
  }
  for (const auto& [name, value] : spec.env) {
    if (name.empty() || name.find('=') != std::string::npos || hasNul(name)) {
      return "environment variable name \"" + name +
             "\" is empty or contains '=' or a NUL byte. Fix: the name goes in the map key, "
             "the value in the map value";
    }
    if (hasNul(value)) return "the value of environment variable " + name + " contains a NUL byte";
  }
  return "";
}

}  // namespace

ExecImage::ExecImage(const ProcessSpec& spec) : problem_(findProblem(spec)) {
  if (!problem_.empty()) return;
  path_ = spec.executable;
  working_dir_ = spec.working_dir;

  argv_storage_.reserve(spec.args.size() + 1);
  argv_storage_.push_back(spec.executable);
  argv_storage_.insert(argv_storage_.end(), spec.args.begin(), spec.args.end());
  env_storage_.reserve(spec.env.size());
  for (const auto& [name, value] : spec.env) env_storage_.push_back(name + "=" + value);

  // Pointers are taken only now that the storage vectors no longer grow.
  for (auto& s : argv_storage_) argv_.push_back(s.data());
  argv_.push_back(nullptr);
  for (auto& s : env_storage_) envp_.push_back(s.data());
  envp_.push_back(nullptr);
}

}  // namespace sandbox::internal
