#include "standin/standin.h"

#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/ThreadPool.h>

#include "standin/router.h"
#include "standin/state.h"

namespace standin {
namespace {

// The CLI opens several keep-alive connections at once and each holds a thread while open;
// an e2e run may drive a few CLIs in parallel.
constexpr int kMaxServerThreads = 64;

}  // namespace

struct Standin::Impl {
  explicit Impl(Options opts) : options(std::move(opts)), state(options) {}

  Options options;
  StandinState state;
  Poco::ThreadPool threads{2, kMaxServerThreads};
  std::unique_ptr<Poco::Net::HTTPServer> server;
  uint16_t port = 0;
};

Standin::Standin(Options options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Standin::~Standin() { stop(); }

void Standin::start() {
  if (impl_->server) return;
  Poco::Net::ServerSocket socket;
  socket.bind(Poco::Net::SocketAddress(impl_->options.host, impl_->options.port),
              /*reuseAddress=*/true);
  socket.listen(128);
  impl_->port = socket.address().port();
  impl_->state.setOrigin(origin());
  impl_->state.setStopping(false);

  Poco::Net::HTTPServerParams::Ptr params = new Poco::Net::HTTPServerParams;
  params->setMaxThreads(kMaxServerThreads);
  params->setMaxQueued(256);
  params->setKeepAlive(true);
  // Longer than undici's 4 s idle timeout, so the client, not the server, retires idle
  // connections and never reuses one that is being closed.
  params->setKeepAliveTimeout(Poco::Timespan(10, 0));
  params->setMaxKeepAliveRequests(0);  // unlimited
  // Idle dispatcher threads notice a stop only when this wait ends, and Poco's stop can leave
  // one without a wake-up; the 10 s default then shows up as a 10 s stop().
  params->setThreadIdleTime(Poco::Timespan(0, 200 * 1000));
  impl_->server = std::make_unique<Poco::Net::HTTPServer>(
      new RequestRouter(impl_->state), impl_->threads, socket, params);
  impl_->server->start();
}

void Standin::stop() {
  if (!impl_->server) return;
  impl_->state.setStopping(true);
  impl_->server->stopAll(/*abortCurrent=*/true);
  impl_->threads.joinAll();
  impl_->server.reset();
}

uint16_t Standin::port() const { return impl_->port; }

std::string Standin::origin() const {
  // A wildcard bind is still reached through loopback.
  const std::string& host = impl_->options.host;
  const bool wildcard = host.empty() || host == "0.0.0.0" || host == "::";
  std::string authority_host = wildcard ? std::string("127.0.0.1") : host;
  if (authority_host.find(':') != std::string::npos) authority_host = "[" + authority_host + "]";
  return "http://" + authority_host + ":" + std::to_string(impl_->port);
}

std::string Standin::mintDeployKey(const std::string& deployment) {
  auto key = impl_->state.mintDeployKey(deployment, DeployKeyGrant{"standin-control", {}, {}});
  if (!key) throw std::invalid_argument("unknown deployment: " + deployment);
  return *key;
}

std::string Standin::adminKey(const std::string& deployment) const {
  auto key = impl_->state.adminKey(deployment);
  if (!key) throw std::invalid_argument("unknown deployment: " + deployment);
  return *key;
}

std::string Standin::mintOAuthToken(int64_t project_id) {
  auto token = project_id == 0
                   ? impl_->state.mintOAuthToken(TokenKind::OAuthTeam, std::nullopt)
                   : impl_->state.mintOAuthToken(TokenKind::OAuthProject, project_id);
  if (!token) throw std::invalid_argument("unknown project: " + std::to_string(project_id));
  return token->token;
}

nlohmann::json Standin::projects() const { return impl_->state.projectsJson(false); }

nlohmann::json Standin::pushes() const { return impl_->state.pushesJson(); }

nlohmann::json Standin::requests() const { return impl_->state.requestsJson(); }

}  // namespace standin
