#include "bundle/extraction_guards.h"

#include <limits>

#include "bundle/refusal.h"

namespace da::bundle::detail {
namespace {

uint64_t saturatingMultiply(uint64_t a, uint64_t b) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) {
    return std::numeric_limits<uint64_t>::max();
  }
  return a * b;
}

}  // namespace

void EntryRegistry::claimDirectory(const std::string& path, const std::string& entry) {
  claimParents(path, entry);
  auto found = kinds_.find(path);
  if (found == kinds_.end()) return insert(path, Kind::kExplicitDirectory, entry);
  if (found->second == Kind::kImpliedDirectory) {
    found->second = Kind::kExplicitDirectory;  // `a/b` came first, now `a/` itself: fine
    return;
  }
  refuse("duplicate_entry",
         found->second == Kind::kFile ? "'" + path + "' is both a file and a directory"
                                      : "directory '" + path + "' appears twice",
         entry);
}

void EntryRegistry::claimFile(const std::string& path, const std::string& entry) {
  claimParents(path, entry);
  auto found = kinds_.find(path);
  if (found == kinds_.end()) return insert(path, Kind::kFile, entry);
  refuse("duplicate_entry",
         found->second == Kind::kFile ? "file '" + path + "' appears twice"
                                      : "'" + path + "' is both a directory and a file",
         entry);
}

void EntryRegistry::claimParents(const std::string& path, const std::string& entry) {
  // Deepest parent first: once a parent is known as a directory, its own parents were
  // checked when it was registered.
  for (size_t slash = path.rfind('/'); slash != std::string::npos && slash > 0;
       slash = path.rfind('/', slash - 1)) {
    const std::string parent = path.substr(0, slash);
    auto found = kinds_.find(parent);
    if (found == kinds_.end()) {
      insert(parent, Kind::kImpliedDirectory, entry);
      continue;
    }
    if (found->second == Kind::kFile) {
      refuse("duplicate_entry", "'" + parent + "' is a file, so it cannot contain '" + path + "'",
             entry);
    }
    return;
  }
}

void EntryRegistry::insert(const std::string& path, Kind kind, const std::string& entry) {
  if (kinds_.size() >= max_entries_) {
    refuse("too_many_entries",
           "archive would create more than " + std::to_string(max_entries_) +
               " files and directories",
           entry, "max_entries");
  }
  kinds_.emplace(path, kind);
}

UnpackBudget::UnpackBudget(const IntakeLimits& limits, uint64_t archive_bytes)
    : limits_(limits),
      archive_bytes_(archive_bytes),
      max_by_ratio_(saturatingMultiply(archive_bytes, limits.max_compression_ratio)) {}

void UnpackBudget::expect(uint64_t declared_bytes, const std::string& entry) const {
  const uint64_t total = unpacked_ + declared_bytes;
  check(total < unpacked_ ? std::numeric_limits<uint64_t>::max() : total, entry);
}

void UnpackBudget::consume(uint64_t bytes, const std::string& entry) {
  unpacked_ += bytes;  // cannot overflow: check() stops us long before
  check(unpacked_, entry);
}

void UnpackBudget::check(uint64_t total, const std::string& entry) const {
  if (total > limits_.max_unpacked_bytes) {
    refuse("too_large",
           "archive unpacks to more than " + std::to_string(limits_.max_unpacked_bytes) +
               " bytes",
           entry, "max_unpacked_bytes");
  }
  if (total > limits_.ratio_exempt_unpacked_bytes && total > max_by_ratio_) {
    refuse("compression_ratio",
           "archive of " + std::to_string(archive_bytes_) + " bytes unpacks to more than " +
               std::to_string(limits_.max_compression_ratio) + " times its size",
           entry, "max_compression_ratio");
  }
}

}  // namespace da::bundle::detail
