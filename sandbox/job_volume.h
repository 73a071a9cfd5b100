// A job's writable space with a size: a tmpfs mounted on the job's work folder for the
// job's whole life (install and push both write into it), so that a job that fills it gets
// ENOSPC there instead of filling the agent's disk. Needs CAP_SYS_ADMIN in the agent's mount
// namespace; where that is missing the job writes to the host disk (bounded per file only).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <sys/types.h>

namespace sandbox {

class JobVolume {
 public:
  // Moves what is in `dir` aside, mounts a tmpfs of `bytes` owned by uid/gid on `dir`, and
  // copies the content back in (owned by uid/gid). nullptr and `problem` on failure, with
  // `dir` as it was.
  static std::unique_ptr<JobVolume> create(const std::filesystem::path& dir, uint64_t bytes, uid_t uid, gid_t gid,
                                           std::string& problem);
  ~JobVolume();  // unmounts (lazily: a process still holding it cannot keep it alive for us)
  JobVolume(const JobVolume&) = delete;
  JobVolume& operator=(const JobVolume&) = delete;

  uint64_t freeBytes() const;
  // Less than 1% or 1 MiB left, whichever is larger: a write failed for want of space.
  bool nearlyFull() const;
  uint64_t sizeBytes() const { return bytes_; }

  // For recovery after a crash: unmounts a volume left on `dir`; false if none was there.
  static bool unmountLeftover(const std::filesystem::path& dir);

 private:
  JobVolume(std::filesystem::path dir, uint64_t bytes) : dir_(std::move(dir)), bytes_(bytes) {}
  std::filesystem::path dir_;
  uint64_t bytes_;
};

}  // namespace sandbox
