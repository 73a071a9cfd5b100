// Landlock rulesets applied for real in forked children: each child sets no_new_privs, restricts
// itself (as the runner's child does before execve), tries the operations and sends back what
// they answered. The test process itself (root) could do every one of them.
#include "sandbox/landlock.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>
#include <vector>

namespace {

namespace fs = std::filesystem;
using sandbox::internal::buildLandlockRuleset;
using sandbox::internal::landlockAbi;
using sandbox::internal::LandlockPolicy;
using sandbox::internal::LandlockRuleset;
using sandbox::internal::restrictSelfWithLandlock;

struct Check {
  std::string what;
  int expected;  // 0 or an errno
  std::function<int()> run;
};

int errnoOf(long result) { return result < 0 ? errno : 0; }

std::string errnoName(int error) {
  if (error == 0) return "success";
  const char* name = ::strerrorname_np(error);
  return name ? name : std::to_string(error);
}

int openAndClose(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  ::close(fd);
  return 0;
}

// The child restricts itself with `ruleset`, runs the checks, writes one int per answer.
void expectUnderRuleset(const LandlockRuleset& ruleset, const std::vector<Check>& checks) {
  ASSERT_EQ(ruleset.problem, "");
  ASSERT_TRUE(ruleset.fd.valid());
  int ends[2];
  ASSERT_EQ(::pipe2(ends, O_CLOEXEC), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(ends[0]);
    int setup = ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 ? 0 : errno;
    if (setup == 0) setup = restrictSelfWithLandlock(ruleset.fd.get());
    (void)!::write(ends[1], &setup, sizeof setup);
    if (setup != 0) ::_exit(1);
    for (const Check& check : checks) {
      const int result = check.run();
      (void)!::write(ends[1], &result, sizeof result);
    }
    ::_exit(0);
  }
  ::close(ends[1]);
  std::vector<int> values;
  int value = 0;
  while (::read(ends[0], &value, sizeof value) == static_cast<ssize_t>(sizeof value)) values.push_back(value);
  ::close(ends[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_FALSE(values.empty()) << "the child sent nothing (wait status " << status << ")";
  ASSERT_EQ(values[0], 0) << "landlock_restrict_self failed: " << errnoName(values[0]);
  ASSERT_EQ(values.size(), checks.size() + 1) << "the child stopped early (wait status " << status << ")";
  for (size_t i = 0; i < checks.size(); ++i) {
    EXPECT_EQ(errnoName(values[i + 1]), errnoName(checks[i].expected)) << checks[i].what;
  }
}

bool has(const std::vector<std::string>& list, const std::string& item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

// Three sibling directories under a fresh temporary one; removed afterwards.
class SandboxLandlock : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/da-landlock-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    root_ = pattern;
    a_ = root_ + "/a";
    b_ = root_ + "/b";
    c_ = root_ + "/c";
    for (const auto& dir : {a_, b_, c_}) {
      fs::create_directories(dir + "/sub");
      std::ofstream(dir + "/file") << "content of " << dir;
    }
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(root_, ignored);
  }

  std::string root_, a_, b_, c_;
};

TEST(SandboxLandlockProbe, TheKernelOffersLandlock) {
  // No skip: the agent's landlock tier depends on it and CI runs on this machine kind.
  const int abi = landlockAbi();
  ASSERT_GE(abi, 1) << "landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) found no "
                       "Landlock on this kernel: it needs Linux >= 5.13 with CONFIG_SECURITY_LANDLOCK=y "
                       "and landlock in the lsm= boot parameter";
  EXPECT_EQ(landlockAbi(), abi) << "probed once";
  EXPECT_EQ(sandbox::internal::landlockRulesetAttrSize(1), 8u);
  EXPECT_EQ(sandbox::internal::landlockRulesetAttrSize(4), 16u);
  EXPECT_EQ(sandbox::internal::landlockRulesetAttrSize(6), 24u);
}

TEST_F(SandboxLandlock, ReadOnlyReadWriteAndUnlistedDirectories) {
  LandlockPolicy policy;
  policy.read_only = {a_};
  policy.read_write = {b_};
  const LandlockRuleset ruleset = buildLandlockRuleset(policy);
  ASSERT_EQ(ruleset.problem, "");
  EXPECT_EQ(ruleset.abi, landlockAbi());
  EXPECT_TRUE(has(ruleset.facilities, "landlock_fs(abi " + std::to_string(landlockAbi()) + ")"));
  EXPECT_TRUE(::fcntl(ruleset.fd.get(), F_GETFD) & FD_CLOEXEC) << "the ruleset fd must not reach the job";

  const bool truncate_handled = landlockAbi() >= 3;
  const std::string a = a_, b = b_, c = c_;
  expectUnderRuleset(
      ruleset,
      {
          {"read a/file", 0, [=] { return openAndClose(a + "/file", O_RDONLY); }},
          {"list a/", 0,
           [=] {
             DIR* dir = ::opendir(a.c_str());
             if (!dir) return errno;
             ::closedir(dir);
             return 0;
           }},
          {"write a/file", EACCES, [=] { return openAndClose(a + "/file", O_WRONLY); }},
          {"create a/new", EACCES, [=] { return openAndClose(a + "/new", O_WRONLY | O_CREAT); }},
          {"mkdir a/newdir", EACCES, [=] { return errnoOf(::mkdir((a + "/newdir").c_str(), 0755)); }},
          {"unlink a/file", EACCES, [=] { return errnoOf(::unlink((a + "/file").c_str())); }},
          {"truncate a/file", truncate_handled ? EACCES : 0,
           [=] { return truncate_handled ? errnoOf(::truncate((a + "/file").c_str(), 0)) : 0; }},
          {"create and write b/new", 0,
           [=] {
             const int fd = ::open((b + "/new").c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
             if (fd < 0) return errno;
             const bool wrote = ::write(fd, "x", 1) == 1;
             ::close(fd);
             return wrote ? 0 : EIO;
           }},
          {"truncate b/file", 0, [=] { return errnoOf(::truncate((b + "/file").c_str(), 0)); }},
          {"mkdir b/newdir", 0, [=] { return errnoOf(::mkdir((b + "/newdir").c_str(), 0755)); }},
          {"rename b/new into b/sub", 0,
           [=] { return errnoOf(::rename((b + "/new").c_str(), (b + "/sub/new").c_str())); }},
          {"unlink b/sub/new", 0, [=] { return errnoOf(::unlink((b + "/sub/new").c_str())); }},
          {"symlink in b", 0, [=] { return errnoOf(::symlink("file", (b + "/link").c_str())); }},
          {"read c/file", EACCES, [=] { return openAndClose(c + "/file", O_RDONLY); }},
          {"list c/", EACCES, [=] { return openAndClose(c, O_RDONLY | O_DIRECTORY); }},
          {"create c/new", EACCES, [=] { return openAndClose(c + "/new", O_WRONLY | O_CREAT); }},
          {"read /etc/passwd (not listed)", EACCES, [] { return openAndClose("/etc/passwd", O_RDONLY); }},
          {"rename b/file to c/", EACCES,
           [=] {
             const int error = errnoOf(::rename((b + "/file").c_str(), (c + "/file2").c_str()));
             return error == EXDEV ? EACCES : error;  // either refusal will do
           }},
      });
  // And nothing leaked out of the child's view: c/ is untouched, b/ got what the child made.
  EXPECT_FALSE(fs::exists(c_ + "/new"));
  EXPECT_FALSE(fs::exists(a_ + "/new"));
  EXPECT_TRUE(fs::is_directory(b_ + "/newdir"));
  EXPECT_TRUE(fs::is_symlink(b_ + "/link"));
}

TEST_F(SandboxLandlock, AFileRuleGrantsThatFileOnly) {
  LandlockPolicy policy;
  policy.read_write = {b_ + "/file"};  // a file, not a directory: only file rights may be asked
  policy.read_only = {a_ + "/file"};
  const LandlockRuleset ruleset = buildLandlockRuleset(policy);
  ASSERT_EQ(ruleset.problem, "");
  const std::string a = a_, b = b_;
  expectUnderRuleset(ruleset,
                     {
                         {"write b/file", 0, [=] { return openAndClose(b + "/file", O_WRONLY | O_TRUNC); }},
                         {"read b/file", 0, [=] { return openAndClose(b + "/file", O_RDONLY); }},
                         {"create b/other", EACCES, [=] { return openAndClose(b + "/other", O_WRONLY | O_CREAT); }},
                         {"list b/", EACCES, [=] { return openAndClose(b, O_RDONLY | O_DIRECTORY); }},
                         {"read a/file", 0, [=] { return openAndClose(a + "/file", O_RDONLY); }},
                         {"write a/file", EACCES, [=] { return openAndClose(a + "/file", O_WRONLY); }},
                     });
}

TEST_F(SandboxLandlock, MissingPathsAreSkippedAndUnopenablePathsNamed) {
  LandlockPolicy policy;
  policy.read_only = {root_ + "/does-not-exist", a_ + "/file/not-a-dir"};
  policy.read_write = {b_};
  const LandlockRuleset skipped = buildLandlockRuleset(policy);
  EXPECT_EQ(skipped.problem, "");
  EXPECT_TRUE(skipped.fd.valid());

  const std::string loop = root_ + "/loop";
  ASSERT_EQ(::symlink("loop", loop.c_str()), 0);
  policy.read_write.push_back(loop);
  const LandlockRuleset refused = buildLandlockRuleset(policy);
  EXPECT_FALSE(refused.fd.valid());
  EXPECT_NE(refused.problem.find("open(\"" + loop + "\", O_PATH|O_CLOEXEC)"), std::string::npos) << refused.problem;
  EXPECT_NE(refused.problem.find("ELOOP"), std::string::npos) << refused.problem;
  EXPECT_NE(refused.problem.find("Fix:"), std::string::npos) << refused.problem;
}

TEST_F(SandboxLandlock, DeviceIoctlsNeedAWritableRule) {
  if (landlockAbi() < 5) {
    EXPECT_FALSE(has(buildLandlockRuleset({}).facilities, "landlock_ioctl_dev"));
    GTEST_SKIP() << "Landlock ABI " << landlockAbi() << " has no LANDLOCK_ACCESS_FS_IOCTL_DEV";
  }
  // /dev/null has no ioctls: the kernel answers ENOTTY, unless Landlock refuses first.
  auto tcgets = [] {
    const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    termios attributes{};
    const int error = errnoOf(::ioctl(fd, TCGETS, &attributes));
    ::close(fd);
    return error;
  };
  LandlockPolicy read_only;
  read_only.read_only = {"/dev/null"};
  const LandlockRuleset refusing = buildLandlockRuleset(read_only);
  EXPECT_TRUE(has(refusing.facilities, "landlock_ioctl_dev"));
  expectUnderRuleset(refusing, {{"ioctl(/dev/null read-only, TCGETS)", EACCES, tcgets}});

  LandlockPolicy read_write;
  read_write.read_write = {"/dev/null"};
  expectUnderRuleset(buildLandlockRuleset(read_write), {{"ioctl(/dev/null read-write, TCGETS)", ENOTTY, tcgets}});
}

TEST_F(SandboxLandlock, SignalsStayInsideTheDomain) {
  LandlockPolicy policy;
  const LandlockRuleset scoped = buildLandlockRuleset(policy);
  ASSERT_EQ(scoped.problem, "");
  if (landlockAbi() < 6) {
    EXPECT_FALSE(has(scoped.facilities, "landlock_signal_scope"));
    GTEST_SKIP() << "Landlock ABI " << landlockAbi() << " cannot scope signals";
  }
  EXPECT_TRUE(has(scoped.facilities, "landlock_signal_scope"));
  expectUnderRuleset(scoped, {
                                 {"kill(getppid(), 0) leaves the domain", EPERM,
                                  [] { return errnoOf(::kill(::getppid(), 0)); }},
                                 {"kill(getpid(), 0)", 0, [] { return errnoOf(::kill(::getpid(), 0)); }},
                                 {"SIGKILL to a child in the domain", 0,
                                  [] {
                                    const pid_t pid = ::fork();
                                    if (pid == 0) {
                                      ::pause();
                                      ::_exit(0);
                                    }
                                    const int error = errnoOf(::kill(pid, SIGKILL));
                                    ::waitpid(pid, nullptr, 0);
                                    return error;
                                  }},
                             });

  policy.scope_signals = false;
  const LandlockRuleset unscoped = buildLandlockRuleset(policy);
  EXPECT_FALSE(has(unscoped.facilities, "landlock_signal_scope"));
  expectUnderRuleset(unscoped, {{"kill(getppid(), 0) unscoped", 0, [] { return errnoOf(::kill(::getppid(), 0)); }}});
}

TEST_F(SandboxLandlock, AbstractUnixSocketsOutsideTheDomainAreUnreachable) {
  if (landlockAbi() < 6) GTEST_SKIP() << "Landlock ABI " << landlockAbi() << " cannot scope abstract sockets";
  // The test process listens on an abstract socket; the restricted child tries to connect.
  const int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const std::string name = "da-landlock-test-" + std::to_string(::getpid());
  std::memcpy(address.sun_path + 1, name.data(), name.size());
  const socklen_t length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&address), length), 0);
  ASSERT_EQ(::listen(listener, 8), 0);
  auto connectToListener = [address, length] {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return errno;
    const int error = errnoOf(::connect(fd, reinterpret_cast<const sockaddr*>(&address), length));
    ::close(fd);
    return error;
  };

  LandlockPolicy policy;
  const LandlockRuleset scoped = buildLandlockRuleset(policy);
  EXPECT_TRUE(has(scoped.facilities, "landlock_abstract_unix_scope"));
  expectUnderRuleset(scoped, {{"connect to the parent's abstract socket", EPERM, connectToListener}});

  policy.scope_abstract_unix = false;
  const LandlockRuleset unscoped = buildLandlockRuleset(policy);
  EXPECT_FALSE(has(unscoped.facilities, "landlock_abstract_unix_scope"));
  expectUnderRuleset(unscoped, {{"connect unscoped", 0, connectToListener}});
  ::close(listener);
}

TEST(SandboxLandlockRestrict, ReportsTheErrno) {
  EXPECT_EQ(restrictSelfWithLandlock(-1), EBADF);
}

}  // namespace
