// The syscall filter every isolated run loads. Compiled once to classic BPF with libseccomp,
// before any fork (the child may not allocate), and loaded by the child after no_new_privs.
//
// Default action: allow. What is denied answers an errno rather than killing, so that Node and
// npm take their fallback paths instead of crashing:
//  - EPERM: mounting and the mount API, namespaces (unshare, setns, clone with CLONE_NEW*),
//    chroot/pivot_root, ptrace and cross-process memory access, kernel modules and kexec, bpf,
//    perf_event_open, the kernel keyring, reboot, swap, userfaultfd, personality changes (the
//    query and PER_LINUX stay allowed), accounting and quotas, file handles, the clock, host and
//    domain names, raw I/O ports, syslog, vhangup, pidfd_getfd, and the terminal-injection
//    ioctls TIOCSTI and TIOCLINUX.
//  - EACCES: socket(AF_INET/AF_INET6) of any type but SOCK_STREAM: a job's network is TCP to
//    the egress proxy, and Landlock (which bounds TCP in its tier) does not see UDP.
//  - ENOSYS: clone3 (its flags live in memory a filter cannot read, so glibc must fall back to
//    clone, whose flags it can), and io_uring (its operations never pass through seccomp, so
//    allowing it would bypass every rule; libuv then uses its thread pool).
// Any syscall made through another architecture's entry point (int 0x80 / x32 on x86_64) kills
// the process: a filter that checks only native syscall numbers would otherwise be bypassed.
#pragma once

#include <linux/filter.h>
#include <string>
#include <vector>

namespace sandbox::internal {

struct SeccompProgram {
  std::vector<sock_filter> instructions;  // empty if problem is set
  std::string problem;                    // why it could not be built (names the libseccomp call)
};

// Built on first use, once per process (thread-safe). Check problem before relying on it.
const SeccompProgram& jobSeccompProgram();

// Async-signal-safe and allocation-free: called in the child between fork and execve, after
// prctl(PR_SET_NO_NEW_PRIVS, 1) (without it, or CAP_SYS_ADMIN, the kernel refuses with EACCES).
// Loads the filter with prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog). Returns 0 or errno;
// EINVAL for a program that was not built (problem set).
int loadSeccompProgram(const SeccompProgram& program) noexcept;

// What the filter denies and how, for docs, reports and tests. Only syscalls that libseccomp
// knows on the native architecture are listed (those are the ones the filter has rules for).
struct DeniedSyscall {
  const char* name;               // "mount"
  int error;                      // EPERM or ENOSYS
  const char* only_when = nullptr;  // nullptr: every call; else the argument condition, for people
};
const std::vector<DeniedSyscall>& deniedSyscalls();

}  // namespace sandbox::internal
