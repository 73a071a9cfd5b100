#include "api/api_server.h"

#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/SocketAddress.h>

namespace da::api {

std::string formatHostPort(const std::string& host, uint16_t port) {
  const bool ipv6 = host.find(':') != std::string::npos;
  return (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

ApiServer::ApiServer(ApiContext context) : context_(context) {}

ApiServer::~ApiServer() { stop(); }

void ApiServer::start() {
  Poco::Net::ServerSocket socket(
      Poco::Net::SocketAddress(context_.settings.listen_host, context_.settings.listen_port), 64);
  auto* params = new Poco::Net::HTTPServerParams;
  // Long polls (at most 16) and event streams (--max-event-streams) each hold a thread; 16
  // more stay for everything else.
  const int max_threads = static_cast<int>(32 + context_.settings.max_event_streams);
  params->setMaxThreads(max_threads);
  params->setMaxQueued(128);
  params->setTimeout(Poco::Timespan(60, 0));  // a slow upload gets a minute between reads
  params->setKeepAlive(true);
  // Poco's stop can miss waking an idle worker, which then sleeps out its idle time (10 s
  // by default) before shutdown completes; a short idle time bounds that.
  params->setThreadIdleTime(Poco::Timespan(0, 200000));
  threads_ = std::make_unique<Poco::ThreadPool>(2, max_threads, 60);
  server_ = std::make_unique<Poco::Net::HTTPServer>(new RouteFactory(context_), *threads_, socket, params);
  server_->start();
}

void ApiServer::stop() {
  if (server_) {
    context_.store.closeWaiters();  // long polls and event streams end now, not at their timeouts
    server_->stopAll(true);
    server_.reset();
    threads_->joinAll();
    threads_.reset();
  }
}

uint16_t ApiServer::port() const { return server_ ? server_->port() : 0; }

std::string ApiServer::baseUrl() const {
  return "http://" + formatHostPort(context_.settings.listen_host, port());
}

}  // namespace da::api
