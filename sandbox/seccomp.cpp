#include "sandbox/seccomp.h"

#include "sandbox/syscall_error.h"

#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sandbox/fds.h"

namespace sandbox::internal {

namespace {

// Which calls of a syscall the filter denies.
enum class When {
  kAlways,
  kPersonalityChange,  // personality(x) unless x is 0xffffffff (query) or 0 (PER_LINUX)
  kNewNamespace,       // clone(flags) with any CLONE_NEW* flag
  kTerminalInjection,  // ioctl(fd, TIOCSTI or TIOCLINUX)
  kInetNotStream,      // socket(AF_INET or AF_INET6, anything but SOCK_STREAM)
};

struct Rule {
  const char* name;
  int error;
  When when;
};

// The single source of truth for both the filter and deniedSyscalls().
constexpr Rule kRules[] = {
    // Mounting and the new mount API: the job's filesystem view is fixed by its tier.
    {"mount", EPERM, When::kAlways},
    {"umount2", EPERM, When::kAlways},
    {"pivot_root", EPERM, When::kAlways},
    {"chroot", EPERM, When::kAlways},
    {"fsopen", EPERM, When::kAlways},
    {"fsmount", EPERM, When::kAlways},
    {"fsconfig", EPERM, When::kAlways},
    {"fspick", EPERM, When::kAlways},
    {"move_mount", EPERM, When::kAlways},
    {"open_tree", EPERM, When::kAlways},
    {"mount_setattr", EPERM, When::kAlways},
    // Namespaces: new user namespaces are the usual way to reach kernel attack surface that
    // needs CAP_SYS_ADMIN. clone3 is below (ENOSYS).
    {"unshare", EPERM, When::kAlways},
    {"setns", EPERM, When::kAlways},
    {"clone", EPERM, When::kNewNamespace},
    // Other processes' memory and file descriptors.
    {"ptrace", EPERM, When::kAlways},
    {"process_vm_readv", EPERM, When::kAlways},
    {"process_vm_writev", EPERM, When::kAlways},
    {"pidfd_getfd", EPERM, When::kAlways},
    // The kernel itself.
    {"kexec_load", EPERM, When::kAlways},
    {"kexec_file_load", EPERM, When::kAlways},
    {"init_module", EPERM, When::kAlways},
    {"finit_module", EPERM, When::kAlways},
    {"delete_module", EPERM, When::kAlways},
    {"bpf", EPERM, When::kAlways},
    {"perf_event_open", EPERM, When::kAlways},
    {"userfaultfd", EPERM, When::kAlways},
    {"personality", EPERM, When::kPersonalityChange},
    {"keyctl", EPERM, When::kAlways},
    {"add_key", EPERM, When::kAlways},
    {"request_key", EPERM, When::kAlways},
    {"lookup_dcookie", EPERM, When::kAlways},
    {"syslog", EPERM, When::kAlways},
    // The machine.
    {"reboot", EPERM, When::kAlways},
    {"swapon", EPERM, When::kAlways},
    {"swapoff", EPERM, When::kAlways},
    {"acct", EPERM, When::kAlways},
    {"quotactl", EPERM, When::kAlways},
    {"vhangup", EPERM, When::kAlways},
    {"iopl", EPERM, When::kAlways},
    {"ioperm", EPERM, When::kAlways},
    {"settimeofday", EPERM, When::kAlways},
    {"clock_settime", EPERM, When::kAlways},
    {"adjtimex", EPERM, When::kAlways},
    {"clock_adjtime", EPERM, When::kAlways},
    {"sethostname", EPERM, When::kAlways},
    {"setdomainname", EPERM, When::kAlways},
    // File handles open any inode of a filesystem, whatever the path-based rules say.
    {"open_by_handle_at", EPERM, When::kAlways},
    {"name_to_handle_at", EPERM, When::kAlways},
    // Pushing input into the controlling terminal of whoever runs the agent.
    {"ioctl", EPERM, When::kTerminalInjection},
    // The network is TCP to the egress proxy. Landlock filters TCP only, so UDP (DNS as a
    // channel, QUIC) and raw sockets are refused here, in every isolated tier.
    {"socket", EACCES, When::kInetNotStream},
    // ENOSYS: "not implemented here", which makes glibc and libuv fall back.
    {"clone3", ENOSYS, When::kAlways},
    {"io_uring_setup", ENOSYS, When::kAlways},
    {"io_uring_enter", ENOSYS, When::kAlways},
    {"io_uring_register", ENOSYS, When::kAlways},
};

const char* describeWhen(When when) {
  switch (when) {
    case When::kAlways: return nullptr;
    case When::kPersonalityChange:
      return "persona other than 0xffffffff (query) and 0 (PER_LINUX)";
    case When::kNewNamespace:
      return "flags with any of CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, "
             "CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET";
    case When::kTerminalInjection: return "request TIOCSTI or TIOCLINUX";
    case When::kInetNotStream: return "domain AF_INET or AF_INET6 with a type other than SOCK_STREAM";
  }
  return nullptr;
}

constexpr uint64_t kNamespaceFlags[] = {CLONE_NEWNS,   CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
                                        CLONE_NEWUSER, CLONE_NEWPID,    CLONE_NEWNET};
// CLONE_NEWTIME (0x80) is not in the list: clone() reads that bit as part of the exit signal;
// only unshare and clone3 can create a time namespace, and both are denied outright.

// libseccomp's rc for calls it knows on this arch; negative pseudo-numbers are syscalls that
// exist only on other architectures (socketcall on x86_64) and __NR_SCMP_ERROR unknown names.
int nativeSyscallNumber(const char* name) {
  const int nr = ::seccomp_syscall_resolve_name(name);
  return nr < 0 ? -1 : nr;
}

// libseccomp returns -errno.
std::string libseccompFailure(const std::string& call, int rc, const std::string& fix) {
  return describeSyscallFailure(call, -rc, fix);
}

std::string hex(uint64_t value) {
  char text[24];
  std::snprintf(text, sizeof text, "0x%llx", static_cast<unsigned long long>(value));
  return text;
}

std::string actionText(int error) {
  return std::string("SCMP_ACT_ERRNO(") + (::strerrorname_np(error) ? ::strerrorname_np(error) : "?") + ")";
}

struct ContextDeleter {
  void operator()(void* ctx) const { ::seccomp_release(ctx); }
};
using Context = std::unique_ptr<void, ContextDeleter>;

constexpr const char* kRuleFix =
    "libseccomp refused a rule of the sandbox's own filter; check that libseccomp >= 2.5 "
    "(libseccomp-dev) is installed and that the agent was built against it";

// Adds the rules of one table entry; "" or the problem.
std::string addRule(scmp_filter_ctx ctx, const Rule& rule, int nr) {
  const uint32_t action = SCMP_ACT_ERRNO(static_cast<uint32_t>(rule.error));
  auto add = [&](unsigned count, const scmp_arg_cmp* cmp, const std::string& condition) -> std::string {
    const int rc = ::seccomp_rule_add_array(ctx, action, nr, count, cmp);
    if (rc == 0) return "";
    return libseccompFailure("seccomp_rule_add(" + actionText(rule.error) + ", \"" + rule.name + "\"" +
                                 (condition.empty() ? "" : ", " + condition) + ")",
                             rc, kRuleFix);
  };
  switch (rule.when) {
    case When::kAlways:
      return add(0, nullptr, "");
    case When::kPersonalityChange: {
      // Deny unless the persona is 0 or 0xffffffff. libseccomp takes one comparison per argument
      // per rule and ORs rules, so the deny set is written as a union: any high bit set (the
      // kernel ignores them, so this only refuses odd raw calls of the allowed values), or low 32
      // bits that mix ones and zeros. A mixed value has, walking the bits round as a ring, some
      // set bit followed by a clear one: one masked comparison per ring position.
      const scmp_arg_cmp high{0, SCMP_CMP_GT, 0xffffffffULL, 0};
      if (auto problem = add(1, &high, "arg0 > 0xffffffff"); !problem.empty()) return problem;
      for (unsigned bit = 0; bit < 32; ++bit) {
        const uint64_t set = 1ULL << bit;
        const uint64_t clear = 1ULL << ((bit + 1) % 32);
        const scmp_arg_cmp mixed{0, SCMP_CMP_MASKED_EQ, set | clear, set};
        if (auto problem = add(1, &mixed, "arg0 & " + hex(set | clear) + " == " + hex(set)); !problem.empty()) {
          return problem;
        }
      }
      return "";
    }
    case When::kNewNamespace: {
      // The flags are clone's first argument, except on s390 where the stack pointer comes first.
      const uint32_t arch = ::seccomp_arch_native();
      const unsigned flags_arg = (arch == SCMP_ARCH_S390 || arch == SCMP_ARCH_S390X) ? 1 : 0;
      for (uint64_t flag : kNamespaceFlags) {
        const scmp_arg_cmp cmp{flags_arg, SCMP_CMP_MASKED_EQ, flag, flag};
        if (auto problem = add(1, &cmp, "arg" + std::to_string(flags_arg) + " & " + hex(flag)); !problem.empty()) {
          return problem;
        }
      }
      return "";
    }
    case When::kTerminalInjection: {
      // The kernel reads the request as an unsigned int: compare the low 32 bits only, or a
      // caller could set a high bit and slip past an exact comparison.
      for (uint64_t request : {uint64_t{TIOCSTI}, uint64_t{TIOCLINUX}}) {
        const scmp_arg_cmp cmp{1, SCMP_CMP_MASKED_EQ, 0xffffffffULL, request};
        if (auto problem = add(1, &cmp, "arg1 & 0xffffffff == " + hex(request)); !problem.empty()) return problem;
      }
      return "";
    }
    case When::kInetNotStream: {
      // The type carries SOCK_CLOEXEC/SOCK_NONBLOCK in its high bits: compare the low 4 bits
      // (SOCK_TYPE_MASK). Every non-stream type is listed, since libseccomp has no "not equal".
      // The kernel reads the domain as an int: compare its low 32 bits, or a high bit set in
      // the register would slip past an exact comparison.
      for (uint64_t domain : {uint64_t{AF_INET}, uint64_t{AF_INET6}}) {
        for (uint64_t type : {uint64_t{SOCK_DGRAM}, uint64_t{SOCK_RAW}, uint64_t{SOCK_RDM}, uint64_t{SOCK_SEQPACKET},
                              uint64_t{SOCK_DCCP}, uint64_t{SOCK_PACKET}}) {
          const scmp_arg_cmp cmp[2] = {{0, SCMP_CMP_MASKED_EQ, 0xffffffffULL, domain}, {1, SCMP_CMP_MASKED_EQ, 0xf, type}};
          if (auto problem = add(2, cmp, "arg0 & 0xffffffff == " + std::to_string(domain) + ", arg1 & 0xf == " + std::to_string(type));
              !problem.empty()) {
            return problem;
          }
        }
      }
      return "";
    }
  }
  return "";
}

// seccomp_export_bpf writes to an fd (libseccomp 2.5 has no export to memory): a memfd, read back.
std::string exportProgram(scmp_filter_ctx ctx, std::vector<sock_filter>& out) {
  UniqueFd memory(::memfd_create("seccomp-bpf", MFD_CLOEXEC));
  if (!memory.valid()) {
    const int error = errno;
    return "memfd_create(\"seccomp-bpf\", MFD_CLOEXEC) failed: " + errnoText(error) +
           ". Fix: the kernel needs memfd support (Linux >= 3.17); raise the agent's fd limit if "
           "the error is EMFILE";
  }
  if (const int rc = ::seccomp_export_bpf(ctx, memory.get()); rc != 0) {
    return libseccompFailure("seccomp_export_bpf(memfd)", rc, kRuleFix);
  }
  struct stat info {};
  if (::fstat(memory.get(), &info) != 0) return "fstat(memfd) failed: " + errnoText(errno);
  const size_t bytes = static_cast<size_t>(info.st_size);
  if (bytes == 0 || bytes % sizeof(sock_filter) != 0 || bytes / sizeof(sock_filter) > BPF_MAXINSNS) {
    return "seccomp_export_bpf(memfd) wrote " + std::to_string(bytes) +
           " bytes, which is not a classic BPF program of 1.." + std::to_string(BPF_MAXINSNS) +
           " instructions. Fix: " + kRuleFix;
  }
  out.resize(bytes / sizeof(sock_filter));
  size_t done = 0;
  while (done < bytes) {
    const ssize_t got = ::pread(memory.get(), reinterpret_cast<char*>(out.data()) + done, bytes - done,
                                static_cast<off_t>(done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      out.clear();
      return "pread(memfd) of the exported filter failed: " + (got < 0 ? errnoText(errno) : "short read");
    }
    done += static_cast<size_t>(got);
  }
  return "";
}

SeccompProgram buildProgram() {
  SeccompProgram program;
  Context ctx(::seccomp_init(SCMP_ACT_ALLOW));
  if (!ctx) {
    program.problem =
        "seccomp_init(SCMP_ACT_ALLOW) failed (libseccomp returned NULL: out of memory, or it does "
        "not support this CPU architecture). Fix: install libseccomp >= 2.5 (libseccomp-dev) for "
        "this architecture";
    return program;
  }
  // Syscalls made through another ABI's entry point (int 0x80 or x32 on x86_64) carry other
  // numbers and would pass a native-only filter: kill the whole process, not just the thread.
  // No other architecture is added to the filter on purpose.
  if (const int rc = ::seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS); rc != 0) {
    program.problem = libseccompFailure(
        "seccomp_attr_set(SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)", rc,
        "SECCOMP_RET_KILL_PROCESS needs Linux >= 4.14 and libseccomp >= 2.4");
    return program;
  }
  // A binary search over syscall numbers instead of a linear walk: every syscall of the job
  // pays for the filter. Only a speed-up, so a libseccomp without it is fine.
  (void)::seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_OPTIMIZE, 2);

  for (const Rule& rule : kRules) {
    const int nr = nativeSyscallNumber(rule.name);
    if (nr < 0) continue;  // not a syscall on this architecture (or newer than libseccomp)
    if (auto problem = addRule(ctx.get(), rule, nr); !problem.empty()) {
      program.problem = std::move(problem);
      return program;
    }
  }
  if (auto problem = exportProgram(ctx.get(), program.instructions); !problem.empty()) {
    program.instructions.clear();
    program.problem = std::move(problem);
  }
  return program;
}

}  // namespace

const SeccompProgram& jobSeccompProgram() {
  static const SeccompProgram program = buildProgram();
  return program;
}

int loadSeccompProgram(const SeccompProgram& program) noexcept {
  if (program.instructions.empty() || program.instructions.size() > BPF_MAXINSNS) return EINVAL;
  sock_fprog fprog{};
  fprog.len = static_cast<unsigned short>(program.instructions.size());
  fprog.filter = const_cast<sock_filter*>(program.instructions.data());
  if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog, 0, 0) != 0) return errno;
  return 0;
}

const std::vector<DeniedSyscall>& deniedSyscalls() {
  static const std::vector<DeniedSyscall> denied = [] {
    std::vector<DeniedSyscall> list;
    for (const Rule& rule : kRules) {
      if (nativeSyscallNumber(rule.name) < 0) continue;
      list.push_back(DeniedSyscall{rule.name, rule.error, describeWhen(rule.when)});
    }
    return list;
  }();
  return denied;
}

}  // namespace sandbox::internal
