// The mount namespace of the namespaces tier: a fresh tmpfs root holding only what the
// FilesystemView lists, built as a flat list of operations before fork (every path and option
// string prepared, so the child only walks an array), then pivot_root into it.
#pragma once

#include <deque>
#include <string>
#include <vector>

#include "sandbox/isolation.h"

namespace sandbox::internal {

struct MountOp {
  enum class Kind {
    kMakeRootPrivate,  // mount(NULL, "/", NULL, MS_REC|MS_PRIVATE): nothing propagates to the host
    kMountTmpfs,       // mount("tmpfs", target, "tmpfs", flags, data)
    kMakeDir,          // mkdir(target, mode)
    kMakeFile,         // open(target, O_CREAT) : the mount point of a file bind
    kBind,             // mount(source, target, NULL, MS_BIND)
    kRemountBind,      // mount(NULL, target, NULL, MS_REMOUNT|MS_BIND|flags): read-only, nosuid, nodev
    kSymlink,          // symlink(source, target)
    kWriteFile,        // target gets `data` (data_length bytes), mode
    kMountProc,        // mount("proc", target, "proc", flags, NULL)
    kMountOverlay,     // mount("overlay", target, "overlay", flags, data)
    kPivotRoot,        // chdir(target); pivot_root(".", "."); umount2(".", MNT_DETACH); chdir("/")
  };
  Kind kind;
  const char* source = nullptr;
  const char* target = nullptr;
  unsigned long flags = 0;
  const char* data = nullptr;
  size_t data_length = 0;
  unsigned mode = 0;
};

class MountPlan {
 public:
  // `new_root` is an existing empty host directory to mount the job's root tmpfs on (in the
  // job's own mount namespace only, so one directory serves every concurrent run).
  MountPlan(const FilesystemView& view, const std::string& new_root);
  MountPlan(const MountPlan&) = delete;
  MountPlan& operator=(const MountPlan&) = delete;

  const std::vector<MountOp>& ops() const { return ops_; }
  // "mount(\"/usr\", \"<root>/usr\", NULL, MS_BIND, NULL)" for error messages.
  std::string describe(size_t index) const;
  // What to do about a failure of op `index` with `error`, nsjail style; may be empty.
  std::string hint(size_t index, int error) const;

 private:
  const char* keep(std::string text);
  std::string inRoot(const std::string& path) const { return root_ + path; }
  void makeParents(const std::string& inside_path);
  void exposeReadOnly(const std::string& host_path);
  void bindAt(const std::string& host_path, const std::string& inside_path, bool read_only);
  void add(MountOp op) { ops_.push_back(op); }

  std::string root_;
  std::deque<std::string> strings_;  // stable addresses for the ops' pointers
  std::vector<std::string> made_dirs_;
  std::vector<MountOp> ops_;
};

// Runs every op in order. Async-signal-safe. Returns 0, or errno with *failed_index set.
int applyMountPlan(const MountPlan& plan, size_t* failed_index) noexcept;

}  // namespace sandbox::internal
