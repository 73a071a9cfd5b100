// convex-standin: serves the local Convex stand-in until SIGINT/SIGTERM.
//
//   convex-standin [--listen HOST:PORT] [--team-token TOKEN]... [--team-token-file FILE]
//                  [--deployment NAME:TYPE]... [--team-slug SLUG] [--project-slug SLUG]
//                  [--oauth-team-token TOKEN]... [--oauth-project-token TOKEN]...
//                  [--self-hosted NAME]...
//
// STANDIN_TEAM_TOKEN adds one more accepted team token. Once serving, exactly one line
// `listening on http://HOST:PORT` goes to stdout; request logs go to stderr and never carry
// Authorization values or keys.
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>

#include <Poco/AutoPtr.h>
#include <Poco/ConsoleChannel.h>
#include <Poco/Exception.h>
#include <Poco/FormattingChannel.h>
#include <Poco/Logger.h>
#include <Poco/PatternFormatter.h>
#include <Poco/String.h>

#include "standin/standin.h"

namespace {

constexpr const char* kUsage =
    "usage: convex-standin [--listen HOST:PORT] [--team-token TOKEN]... [--team-token-file FILE]\n"
    "                      [--deployment NAME:TYPE]... [--team-slug SLUG] [--project-slug SLUG]\n"
    "                      [--oauth-team-token TOKEN]... [--oauth-project-token TOKEN]...\n"
    "                      [--self-hosted NAME]...\n"
    "  TYPE is dev, prod, preview or custom. Without --deployment the stand-in hosts\n"
    "  happy-otter-123 (prod) and brave-fox-456 (dev). STANDIN_TEAM_TOKEN adds a team token.\n"
    "  OAuth tokens are team:<team-slug>|SECRET and project:<team-slug>:<project-slug>|SECRET\n"
    "  (a bare SECRET is completed with the slugs). --self-hosted NAME hosts a deployment\n"
    "  reachable only with its admin key (GET /_standin/admin_keys/NAME).\n";

class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

void parseListen(const std::string& value, standin::Options& options) {
  const auto colon = value.rfind(':');
  if (colon == std::string::npos) throw UsageError("--listen expects HOST:PORT, got " + value);
  std::string host = value.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string port = value.substr(colon + 1);
  char* end = nullptr;
  const long number = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || number < 0 || number > 65535) {
    throw UsageError("--listen: bad port in " + value);
  }
  options.host = host.empty() ? "127.0.0.1" : host;
  options.port = static_cast<uint16_t>(number);
}

void readTokenFile(const std::string& path, standin::Options& options) {
  std::ifstream in(path);
  if (!in) throw UsageError("--team-token-file: cannot read " + path);
  std::string line;
  while (std::getline(in, line)) {
    const std::string token = Poco::trim(line);
    if (!token.empty()) options.team_tokens.push_back(token);
  }
}

standin::DeploymentSeed parseDeployment(const std::string& value) {
  const auto colon = value.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    throw UsageError("--deployment expects NAME:TYPE, got " + value);
  }
  standin::DeploymentSeed seed{value.substr(0, colon), value.substr(colon + 1)};
  if (seed.type != "dev" && seed.type != "prod" && seed.type != "preview" &&
      seed.type != "custom") {
    throw UsageError("--deployment: TYPE must be dev, prod, preview or custom, got " + seed.type);
  }
  return seed;
}

// `team:<team>|S` / `project:<team>:<project>|S`; a bare S gets the configured slugs.
std::string completeOAuthToken(const std::string& value, const std::string& prefix,
                               const std::string& flag) {
  if (value.find('|') == std::string::npos) {
    if (value.empty()) throw UsageError(flag + " needs a non-empty token");
    return prefix + "|" + value;
  }
  if (value.rfind(prefix + "|", 0) != 0 || value.size() == prefix.size() + 1) {
    throw UsageError(flag + " expects " + prefix + "|SECRET (or a bare SECRET)");
  }
  return value;
}

bool validDeploymentName(const std::string& name) {
  return !name.empty() && name.find_first_of("|: /") == std::string::npos;
}

standin::Options parseArguments(int argc, char** argv) {
  standin::Options options;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    std::optional<std::string> inline_value;
    if (const auto equals = flag.find('='); flag.rfind("--", 0) == 0 && equals != std::string::npos) {
      inline_value = flag.substr(equals + 1);
      flag = flag.substr(0, equals);
    }
    if (flag == "--help" || flag == "-h") {
      std::cout << kUsage;
      std::exit(0);
    }
    auto value = [&]() -> std::string {
      if (inline_value) return *inline_value;
      if (i + 1 >= argc) throw UsageError(flag + " needs a value");
      return argv[++i];
    };
    if (flag == "--listen") parseListen(value(), options);
    else if (flag == "--team-token") options.team_tokens.push_back(value());
    else if (flag == "--team-token-file") readTokenFile(value(), options);
    else if (flag == "--deployment") options.deployments.push_back(parseDeployment(value()));
    else if (flag == "--team-slug") options.team_slug = value();
    else if (flag == "--project-slug") options.project_slug = value();
    else if (flag == "--oauth-team-token") options.oauth_team_tokens.push_back(value());
    else if (flag == "--oauth-project-token") options.oauth_project_tokens.push_back(value());
    else if (flag == "--self-hosted") {
      const std::string name = value();
      if (!validDeploymentName(name)) throw UsageError("--self-hosted: bad name " + name);
      options.self_hosted.push_back(name);
    }
    else throw UsageError("unknown argument " + flag);
  }
  for (auto& token : options.oauth_team_tokens) {
    token = completeOAuthToken(token, "team:" + options.team_slug, "--oauth-team-token");
  }
  for (auto& token : options.oauth_project_tokens) {
    token = completeOAuthToken(
        token, "project:" + options.team_slug + ":" + options.project_slug, "--oauth-project-token");
  }
  if (const char* token = std::getenv("STANDIN_TEAM_TOKEN"); token && *token) {
    options.team_tokens.emplace_back(token);
  }
  return options;
}

void logRequestsToStderr() {
  Poco::AutoPtr<Poco::PatternFormatter> formatter(
      new Poco::PatternFormatter("%H:%M:%S.%i convex-standin: %t"));
  Poco::AutoPtr<Poco::ConsoleChannel> console(new Poco::ConsoleChannel(std::cerr));
  Poco::AutoPtr<Poco::FormattingChannel> channel(new Poco::FormattingChannel(formatter, console));
  Poco::Logger& logger = Poco::Logger::get("convex-standin");
  logger.setChannel(channel);
  logger.setLevel(Poco::Message::PRIO_INFORMATION);
}

}  // namespace

int main(int argc, char** argv) {
  standin::Options options;
  try {
    options = parseArguments(argc, argv);
  } catch (const UsageError& error) {
    std::cerr << "convex-standin: " << error.what() << '\n' << kUsage;
    return 2;
  }
  if (options.team_tokens.empty() && options.oauth_team_tokens.empty() &&
      options.oauth_project_tokens.empty()) {
    std::cerr << "convex-standin: no team token given; every Management API call will get 401\n";
  }

  // Block the stop signals before any server thread exists, so every thread inherits the mask
  // and sigwait() below is the only place they are delivered.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  // A client that disconnects mid-response must not kill the server.
  std::signal(SIGPIPE, SIG_IGN);

  logRequestsToStderr();
  standin::Standin server(options);
  try {
    server.start();
  } catch (const Poco::Exception& error) {
    std::cerr << "convex-standin: cannot listen on " << options.host << ':' << options.port << ": "
              << error.displayText() << '\n';
    return 1;
  } catch (const std::exception& error) {
    std::cerr << "convex-standin: cannot start: " << error.what() << '\n';
    return 1;
  }
  std::cout << "listening on " << server.origin() << std::endl;

  int received = 0;
  sigwait(&stop_signals, &received);
  std::cerr << "convex-standin: stopping on signal " << received << '\n';
  server.stop();
  return 0;
}
