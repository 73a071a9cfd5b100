// The agent's HTTP API: a Poco HTTPServer on the configured address with RouteFactory.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <Poco/Net/HTTPServer.h>
#include <Poco/ThreadPool.h>

#include "api/handlers.h"

namespace da::api {

// "HOST:PORT", with an IPv6 host in brackets ("[::1]:8080") as URLs and --listen write it.
std::string formatHostPort(const std::string& host, uint16_t port);

class ApiServer {
 public:
  explicit ApiServer(ApiContext context);
  ~ApiServer();

  void start();                  // binds (port 0 picks a free port) and starts serving
  void stop();
  uint16_t port() const;
  std::string baseUrl() const;   // "http://HOST:PORT", "http://[::1]:PORT"

 private:
  ApiContext context_;
  // The server's own pool: Poco's default pool holds 16 threads, fewer than long polls and
  // event streams may hold at once.
  std::unique_ptr<Poco::ThreadPool> threads_;
  std::unique_ptr<Poco::Net::HTTPServer> server_;
};

}  // namespace da::api
