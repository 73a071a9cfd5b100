// Internal to src/bundle: the private directory an archive is unpacked into before it
// becomes the destination. This is what makes extraction all-or-nothing: entries are
// written here, and the directory is renamed onto the destination only once every entry
// passed; otherwise it is deleted with everything in it.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <vector>

namespace da::bundle::detail {

// Owns one open file descriptor and closes it when it goes out of scope.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  int release();
  void reset();

 private:
  int fd_ = -1;
};

class StagingDir {
 public:
  // Creates `<dest>.partial-XXXXXX` next to `dest`: the same filesystem, so the final rename
  // is atomic, and a fresh mkdtemp directory (mode 0700, owned by us), so no other user can
  // plant a symlink in it while entries are being written.
  explicit StagingDir(const std::filesystem::path& dest);
  ~StagingDir();  // deletes the directory and its contents unless commitTo() succeeded
  StagingDir(const StagingDir&) = delete;
  StagingDir& operator=(const StagingDir&) = delete;

  // `relative` is a path already checked by normalizeEntryPath. Missing parent directories
  // are created with mode 0755. Every component is opened with O_NOFOLLOW relative to its
  // parent, so nothing is ever written through a symlink even if one appeared on disk.
  void makeDirectory(const std::string& relative);
  // Creates a new regular file with exactly `mode` (never replacing an existing one) and
  // returns a descriptor open for writing.
  UniqueFd createFile(const std::string& relative, mode_t mode);

  // Renames the staging directory to `dest`, refusing (destination_exists) if something
  // appeared there in the meantime instead of replacing it.
  void commitTo(const std::filesystem::path& dest);

 private:
  // One directory of the path the previous entry was written under, open.
  struct OpenDirectory {
    std::string name;
    UniqueFd fd;
  };

  // Returns a descriptor of the entry's parent directory (creating missing ones), valid
  // until the next call. Archives list a directory's entries together, so the parent of one
  // entry mostly shares its leading directories with the previous one: those stay open in
  // open_dirs_ and only the components that differ are opened, instead of every component
  // from the root for every entry (19,000 files under 500 nested directories: 40 s of CPU).
  int openParentDirectory(const std::string& relative, std::string* leaf);

  std::filesystem::path path_;
  UniqueFd root_;
  // open_dirs_[i] is component i of the last parent directory opened, below root_. At most
  // kMaxOpenDirectories are kept, so descriptors stay bounded however deep a path goes (the
  // depth limit is configurable). Below that depth only the last parent itself stays open,
  // in uncached_parent_, and serves the entries that share exactly that parent.
  std::vector<OpenDirectory> open_dirs_;
  UniqueFd uncached_parent_;
  std::string uncached_parent_path_;
  bool committed_ = false;
};

}  // namespace da::bundle::detail
