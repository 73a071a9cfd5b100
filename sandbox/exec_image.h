// The execve() arguments of one run, built (and validated) before fork: after fork the child
// may not allocate, so argv and envp must already be NUL-terminated C arrays.
#pragma once

#include <string>
#include <vector>

#include "sandbox/process.h"

namespace sandbox::internal {

class ExecImage {
 public:
  explicit ExecImage(const ProcessSpec& spec);
  // Pointers into our own storage: neither copyable nor movable.
  ExecImage(const ExecImage&) = delete;
  ExecImage& operator=(const ExecImage&) = delete;

  // Empty when the spec can be executed; otherwise why not and how to fix it.
  const std::string& problem() const { return problem_; }

  const char* path() const { return path_.c_str(); }
  const char* workingDir() const { return working_dir_.c_str(); }
  char* const* argv() const { return argv_.data(); }
  char* const* envp() const { return envp_.data(); }

 private:
  std::string path_;
  std::string working_dir_;
  std::vector<std::string> argv_storage_;
  std::vector<std::string> env_storage_;
  std::vector<char*> argv_;
  std::vector<char*> envp_;
  std::string problem_;
};

}  // namespace sandbox::internal
