#include "bundle/staging_dir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <system_error>
#include <vector>

#include "bundle/refusal.h"
#include "util/strings.h"

namespace da::bundle::detail {
namespace fs = std::filesystem;

namespace {

constexpr mode_t kDirectoryMode = 0755;
// Enough for any path within the default max_path_depth; a higher configured depth still
// works, it just re-opens the directories below this depth for every entry.
constexpr size_t kMaxOpenDirectories = 64;

[[noreturn]] void refuseIo(const std::string& what, const std::string& entry = {}) {
  refuse("io_error", what + ": " + std::strerror(errno), entry);
}

// Opens directory `name` inside `parent` without following a symlink, creating it first
// when it does not exist yet.
UniqueFd openOrCreateDirectory(int parent, const std::string& name, const std::string& entry) {
  const int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
  UniqueFd dir(::openat(parent, name.c_str(), flags));
  if (dir.get() >= 0) return dir;
  if (errno != ENOENT) refuseIo("cannot open directory '" + name + "'", entry);

  if (::mkdirat(parent, name.c_str(), kDirectoryMode) != 0 && errno != EEXIST) {
    refuseIo("cannot create directory '" + name + "'", entry);
  }
  dir = UniqueFd(::openat(parent, name.c_str(), flags));
  if (dir.get() < 0) refuseIo("cannot open directory '" + name + "'", entry);
  // mkdirat's mode is filtered through the umask; the bundle contract says 0755.
  if (::fchmod(dir.get(), kDirectoryMode) != 0) refuseIo("cannot chmod directory", entry);
  return dir;
}

// rename(2) silently replaces an empty directory; RENAME_NOREPLACE refuses instead. Some
// filesystems lack it (EINVAL), where a check-then-rename is the best that is available.
bool renameWithoutReplacing(const fs::path& from, const fs::path& to) {
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return true;
  if (errno != EINVAL && errno != ENOSYS) return false;
  struct stat existing;
  if (::lstat(to.c_str(), &existing) == 0) {
    errno = EEXIST;
    return false;
  }
  return ::rename(from.c_str(), to.c_str()) == 0;
}

}  // namespace

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    reset();
    fd_ = other.release();
  }
  return *this;
}

int UniqueFd::release() {
  int fd = fd_;
  fd_ = -1;
  return fd;
}

void UniqueFd::reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

StagingDir::StagingDir(const fs::path& dest) {
  std::string name_template = dest.string() + ".partial-XXXXXX";
  if (::mkdtemp(name_template.data()) == nullptr) {
    refuseIo("cannot create staging directory next to " + dest.string());
  }
  path_ = name_template;
  root_ = UniqueFd(::open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (root_.get() < 0) {
    int saved = errno;
    std::error_code ignored;
    fs::remove(path_, ignored);
    errno = saved;
    refuseIo("cannot open staging directory " + path_.string());
  }
}

StagingDir::~StagingDir() {
  open_dirs_.clear();
  uncached_parent_.reset();
  root_.reset();
  if (committed_) return;
  std::error_code ignored;  // best effort: a destructor has nobody to report to
  fs::remove_all(path_, ignored);
}

int StagingDir::openParentDirectory(const std::string& relative, std::string* leaf) {
  const size_t last_slash = relative.rfind('/');
  *leaf = relative.substr(last_slash == std::string::npos ? 0 : last_slash + 1);
  const std::string_view parent =
      last_slash == std::string::npos ? std::string_view() : std::string_view(relative).substr(0, last_slash);
  if (uncached_parent_.get() >= 0 && parent == uncached_parent_path_) return uncached_parent_.get();

  std::vector<std::string_view> parts;
  if (!parent.empty()) parts = da::splitOn(parent, '/');
  // Paths are normalized (no `.`, `..` or empty components), so equal leading names mean
  // the same directories.
  size_t shared = 0;
  while (shared < open_dirs_.size() && shared < parts.size() && open_dirs_[shared].name == parts[shared]) {
    ++shared;
  }
  // A parent higher up the open chain (say `package.json` between two files of `a/b/`) is
  // served from it without closing the deeper directories the next entry likely needs.
  if (shared == parts.size()) return shared == 0 ? root_.get() : open_dirs_[shared - 1].fd.get();

  open_dirs_.erase(open_dirs_.begin() + static_cast<std::ptrdiff_t>(shared), open_dirs_.end());
  uncached_parent_.reset();
  int current = open_dirs_.empty() ? root_.get() : open_dirs_.back().fd.get();
  for (size_t i = shared; i < parts.size(); ++i) {
    UniqueFd next = openOrCreateDirectory(current, std::string(parts[i]), relative);
    if (open_dirs_.size() < kMaxOpenDirectories) {
      open_dirs_.push_back(OpenDirectory{std::string(parts[i]), std::move(next)});
      current = open_dirs_.back().fd.get();
    } else {
      uncached_parent_ = std::move(next);  // closes the one above, which is no longer needed
      current = uncached_parent_.get();
    }
  }
  if (uncached_parent_.get() >= 0) uncached_parent_path_ = std::string(parent);
  return current;
}

void StagingDir::makeDirectory(const std::string& relative) {
  std::string leaf;
  const int parent = openParentDirectory(relative, &leaf);
  openOrCreateDirectory(parent, leaf, relative);
}

UniqueFd StagingDir::createFile(const std::string& relative, mode_t mode) {
  std::string leaf;
  const int parent = openParentDirectory(relative, &leaf);
  // O_EXCL: duplicates are refused before we get here, so an existing file means something
  // is wrong and must not be overwritten. O_NOFOLLOW: never write through a symlink.
  UniqueFd file(::openat(parent, leaf.c_str(),
                         O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (file.get() < 0) refuseIo("cannot create file", relative);
  // Explicit chmod: the open() mode is filtered through the umask.
  if (::fchmod(file.get(), mode) != 0) refuseIo("cannot chmod file", relative);
  return file;
}

void StagingDir::commitTo(const fs::path& dest) {
  if (::fchmod(root_.get(), kDirectoryMode) != 0) refuseIo("cannot chmod staging directory");
  open_dirs_.clear();
  uncached_parent_.reset();
  root_.reset();
  if (!renameWithoutReplacing(path_, dest)) {
    if (errno == EEXIST || errno == ENOTEMPTY) {
      refuse("destination_exists", "destination appeared during extraction: " + dest.string());
    }
    refuseIo("cannot move staging directory to " + dest.string());
  }
  committed_ = true;
}

}  // namespace da::bundle::detail
