// One request handler per route, Poco style; RouteFactory picks one per request.
#pragma once

#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>

#include "config/settings.h"
#include "jobs/job_runner.h"
#include "jobs/job_store.h"

namespace da::api {

struct ApiContext {
  const Settings& settings;
  JobStore& store;
  JobRunner& runner;
};

// Every route's handler: an exception escaping `handle` (a full disk, a dropped upload)
// becomes a 500 problem instead of a dropped connection, and is logged.
class GuardedHandler : public Poco::Net::HTTPRequestHandler {
 public:
  void handleRequest(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response) final;

 protected:
  virtual void handle(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response) = 0;
};

// GET /healthz: liveness, and how jobs are isolated (the tier and facilities probed at start-up).
class HealthHandler : public GuardedHandler {
 public:
  explicit HealthHandler(ApiContext context) : context_(context) {}

 protected:
  void handle(Poco::Net::HTTPServerRequest&, Poco::Net::HTTPServerResponse&) override;

 private:
  ApiContext context_;
};

// POST /v1/deploys: intake happens here, synchronously, so a bad bundle is refused with a
// precise problem and leaves nothing behind; the slow work (npm, CLI) runs in a job.
class CreateDeployHandler : public GuardedHandler {
 public:
  explicit CreateDeployHandler(ApiContext context) : context_(context) {}

 protected:
  void handle(Poco::Net::HTTPServerRequest&, Poco::Net::HTTPServerResponse&) override;

 private:
  ApiContext context_;
};

// GET /v1/deploys/{id}[?wait=SECONDS]: the report; `wait` long-polls until it is terminal.
class GetDeployHandler : public GuardedHandler {
 public:
  GetDeployHandler(ApiContext context, std::string id) : context_(context), id_(std::move(id)) {}

 protected:
  void handle(Poco::Net::HTTPServerRequest&, Poco::Net::HTTPServerResponse&) override;

 private:
  ApiContext context_;
  std::string id_;
};

// GET /v1/deploys/{id}/log[?phase=push|install]: the stored, redacted output as text.
class GetDeployLogHandler : public GuardedHandler {
 public:
  GetDeployLogHandler(ApiContext context, std::string id) : context_(context), id_(std::move(id)) {}

 protected:
  void handle(Poco::Net::HTTPServerRequest&, Poco::Net::HTTPServerResponse&) override;

 private:
  ApiContext context_;
  std::string id_;
};

class RouteFactory : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  explicit RouteFactory(ApiContext context) : context_(context) {}
  Poco::Net::HTTPRequestHandler* createRequestHandler(const Poco::Net::HTTPServerRequest& request) override;

 private:
  ApiContext context_;
};

}  // namespace da::api
