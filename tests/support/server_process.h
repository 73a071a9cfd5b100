// Starts a server binary (the agent or the stand-in) as a real child process, waits for its
// `listening on http://HOST:PORT` line, and stops it again. No sleeps: the line is the signal.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace testsupport {

class ServerProcess {
 public:
  // Throws std::runtime_error with the process's exit status when it stops before listening.
  // A non-empty `stderr_path` receives the process's stderr (appended), so a test can read its log.
  ServerProcess(const std::string& executable, const std::vector<std::string>& args,
                const std::map<std::string, std::string>& env, const std::string& stderr_path = {});
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  const std::string& baseUrl() const { return base_url_; }
  int pid() const { return pid_; }
  // SIGTERM, then waits; returns the exit code.
  int stop();
  // SIGKILL, then waits: a crash, with no chance to clean up.
  void kill();
  // Sends `signal` and returns at once.
  void signal(int signal);
  // Waits for the process to exit by itself; returns its exit code.
  int wait();

 private:
  int pid_ = -1;
  int stdout_fd_ = -1;
  std::string base_url_;
  bool stopped_ = false;
  int exit_code_ = -1;
};

struct HttpResult {
  int status = 0;
  std::string reason_phrase;  // as sent on the status line
  std::map<std::string, std::string> headers;
  std::string body;
};

// One request with a fresh connection; throws on network failure.
HttpResult httpRequest(const std::string& method, const std::string& url,
                       const std::map<std::string, std::string>& headers = {},
                       const std::string& body = {}, int timeout_seconds = 90);

// Every answer (status line, headers, body) httpRequest got from a deploy-agent that a
// ServerProcess started in this process, oldest first, handed over once: what the secret scan
// reads besides the files the agent wrote (support/secret_scan.h).
std::vector<std::string> takeAgentAnswers();

// Paths of things the build and set-up produce.
std::string sourceDir();
std::string binaryDir();
std::string toolchainDir();

}  // namespace testsupport
