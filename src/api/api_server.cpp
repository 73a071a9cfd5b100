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
  params->setMaxThreads(32);
  params->setMaxQueued(128);
  params->setTimeout(Poco::Timespan(60, 0));  // a slow upload gets a minute between reads
  params->setKeepAlive(true);
  // Poco's stop can miss waking an idle worker, which then sleeps out its idle time (10 s
  // by default) before shutdown completes; a short idle time bounds that.
  params->setThreadIdleTime(Poco::Timespan(0, 200000));
  server_ = std::make_unique<Poco::Net::HTTPServer>(new RouteFactory(context_), socket, params);
  server_->start();
}

void ApiServer::stop() {
  if (server_) {
    server_->stopAll(true);
    server_.reset();
  }
}

uint16_t ApiServer::port() const { return server_ ? server_->port() : 0; }

std::string ApiServer::baseUrl() const {
  return "http://" + formatHostPort(context_.settings.listen_host, port());
}

}  // namespace da::api
