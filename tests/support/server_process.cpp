#include "support/server_process.h"


#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <mutex>
#include <utility>
#include <stdexcept>

#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/String.h>
#include <Poco/URI.h>

extern char** environ;

namespace testsupport {

namespace {

// Origins of the agents started here, and what httpRequest got from them.
std::mutex agent_answers_mutex;
std::vector<std::string> agent_origins;
std::vector<std::string> agent_answers;

void watchAgent(const std::string& executable, const std::string& base_url) {
  if (executable.size() < 12 || executable.compare(executable.size() - 12, 12, "deploy-agent") != 0) return;
  std::lock_guard lock(agent_answers_mutex);
  agent_origins.push_back(base_url);
}

void keepIfFromAgent(const std::string& url, const HttpResult& result) {
  std::lock_guard lock(agent_answers_mutex);
  for (const auto& origin : agent_origins) {
    if (url.rfind(origin, 0) != 0) continue;
    std::string answer = std::to_string(result.status) + " " + result.reason_phrase + "\n";
    for (const auto& [name, value] : result.headers) answer += name + ": " + value + "\n";
    agent_answers.push_back(answer + "\n" + result.body);
    return;
  }
}

std::string readLine(int fd) {
  std::string line;
  char c;
  while (true) {
    ssize_t n = read(fd, &c, 1);
    if (n == 1) {
      if (c == '\n') return line;
      line.push_back(c);
    } else if (n == 0) {
      return line;  // EOF: the process is gone
    } else if (errno != EINTR) {
      return line;
    }
  }
}

// Test servers talk only to loopback: a proxy set on the developer's machine would carry the
// agent's and the CLI's calls to the stand-in off the host (neither bypasses loopback unless
// NO_PROXY says so), so proxy variables are never inherited.
bool isProxyVariable(const std::string& name) {
  const std::string lower = Poco::toLower(name);
  return lower == "http_proxy" || lower == "https_proxy" || lower == "all_proxy" || lower == "no_proxy";
}

}  // namespace

ServerProcess::ServerProcess(const std::string& executable, const std::vector<std::string>& args,
                             const std::map<std::string, std::string>& env, const std::string& stderr_path) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");

  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    std::string entry(*e);
    const std::string name = entry.substr(0, entry.find('='));
    if (!env.count(name) && !isProxyVariable(name)) env_strings.push_back(entry);
  }
  for (const auto& [name, value] : env) env_strings.push_back(name + "=" + value);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_strings{executable};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);

  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    dup2(pipe_fds[1], STDOUT_FILENO);
    if (!stderr_path.empty()) {
      const int log_fd = open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
      if (log_fd < 0) _exit(126);
      dup2(log_fd, STDERR_FILENO);
    }
    execve(executable.c_str(), argv.data(), envp.data());
    _exit(127);
  }
  close(pipe_fds[1]);
  stdout_fd_ = pipe_fds[0];

  const std::string line = readLine(stdout_fd_);
  const std::string marker = "listening on ";
  if (line.rfind(marker, 0) != 0) {
    int code = stop();
    throw std::runtime_error(executable + " did not start (exit " + std::to_string(code) +
                             "), first stdout line: '" + line + "'");
  }
  base_url_ = line.substr(marker.size());
  watchAgent(executable, base_url_);
}

ServerProcess::~ServerProcess() { stop(); }

int ServerProcess::stop() {
  if (stopped_ || pid_ <= 0) return exit_code_;
  stopped_ = true;
  ::kill(pid_, SIGTERM);
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  if (stdout_fd_ >= 0) close(stdout_fd_);
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return exit_code_;
}

void ServerProcess::kill() {
  if (stopped_ || pid_ <= 0) return;
  stopped_ = true;
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  if (stdout_fd_ >= 0) close(stdout_fd_);
  exit_code_ = 128 + SIGKILL;
}

void ServerProcess::signal(int signal) {
  if (!stopped_ && pid_ > 0) ::kill(pid_, signal);
}

int ServerProcess::wait() {
  if (stopped_ || pid_ <= 0) return exit_code_;
  stopped_ = true;
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  if (stdout_fd_ >= 0) close(stdout_fd_);
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return exit_code_;
}

HttpResult httpRequest(const std::string& method, const std::string& url,
                       const std::map<std::string, std::string>& headers, const std::string& body,
                       int timeout_seconds) {
  Poco::URI uri(url);
  Poco::Net::HTTPClientSession session(uri.getHost(), uri.getPort());
  session.setTimeout(Poco::Timespan(timeout_seconds, 0));
  Poco::Net::HTTPRequest request(method, uri.getPathAndQuery(), Poco::Net::HTTPMessage::HTTP_1_1);
  for (const auto& [name, value] : headers) request.set(name, value);
  if (!body.empty() || method == "POST") request.setContentLength(static_cast<std::streamsize>(body.size()));
  session.sendRequest(request) << body;
  Poco::Net::HTTPResponse response;
  std::istream& in = session.receiveResponse(response);
  HttpResult result;
  result.status = static_cast<int>(response.getStatus());
  result.reason_phrase = response.getReason();
  for (const auto& [name, value] : response) result.headers[name] = value;
  result.body.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  keepIfFromAgent(url, result);
  return result;
}

std::vector<std::string> takeAgentAnswers() {
  std::lock_guard lock(agent_answers_mutex);
  return std::exchange(agent_answers, {});
}

std::string sourceDir() { return DA_SOURCE_DIR; }
std::string binaryDir() { return DA_BINARY_DIR; }
std::string toolchainDir() {
  if (const char* dir = std::getenv("DEPLOY_AGENT_TOOLCHAIN")) return dir;
  return std::string(DA_SOURCE_DIR) + "/toolchain";
}

}  // namespace testsupport
