// Internal to src/bundle: the bookkeeping that decides, entry by entry, whether an archive
// may go on being unpacked. Both classes refuse by throwing Refusal.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>

#include "bundle/intake.h"

namespace da::bundle::detail {

// Every path the archive has produced so far, explicit or implied by a deeper entry.
// Refuses duplicates and file/directory conflicts (case-sensitive, as the filesystem is), and
// counts implied directories against max_entries too: `a/b/c/.../x` creates one inode per
// component, and many deep distinct paths would otherwise exhaust inodes and memory.
class EntryRegistry {
 public:
  explicit EntryRegistry(uint64_t max_entries) : max_entries_(max_entries) {}

  void claimDirectory(const std::string& path, const std::string& entry);
  void claimFile(const std::string& path, const std::string& entry);

 private:
  enum class Kind { kFile, kExplicitDirectory, kImpliedDirectory };

  void claimParents(const std::string& path, const std::string& entry);
  void insert(const std::string& path, Kind kind, const std::string& entry);

  uint64_t max_entries_;
  std::unordered_map<std::string, Kind> kinds_;
};

// Counts the bytes that actually come out of the decompressor. Header sizes can lie (and
// overlapping zip entries defeat any per-entry check), so the running total is what counts.
class UnpackBudget {
 public:
  UnpackBudget(const IntakeLimits& limits, uint64_t archive_bytes);

  // Refuses early when a header already admits more than the budget allows; it saves the
  // decompression work but is never relied on.
  void expect(uint64_t declared_bytes, const std::string& entry) const;
  // Adds bytes just read from the archive; refuses as soon as a limit is crossed.
  void consume(uint64_t bytes, const std::string& entry);
  uint64_t unpacked() const { return unpacked_; }

 private:
  void check(uint64_t total, const std::string& entry) const;

  const IntakeLimits& limits_;
  uint64_t archive_bytes_;
  uint64_t max_by_ratio_;
  uint64_t unpacked_ = 0;
};

}  // namespace da::bundle::detail
