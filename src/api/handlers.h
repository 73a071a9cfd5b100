// One request handler per route, Poco style; RouteFactory picks one per request.
#pragma once

#include <atomic>

#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>

#include "config/settings.h"
#include "jobs/job_runner.h"
#include "jobs/job_store.h"

namespace da {
class IdempotencyIndex;
}

namespace da::api {

class Metrics;

struct ApiContext {
  const Settings& settings;
  JobStore& store;
  JobRunner& runner;
  da::IdempotencyIndex* idempotency = nullptr;  // null: Idempotency-Key is refused
  Metrics* metrics = nullptr;                   // null: /metrics is 404 and nothing is counted
  const std::atomic<bool>* draining = nullptr;  // raised by SIGTERM: no new deploys
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

// GET /readyz: 200 only when this agent can take and run a deploy now (toolchain present,
// sandbox tier as asked, state directory writable with free space, queue not full, not
// draining); else 503 naming every reason. Unauthenticated, like /healthz.
class ReadyHandler : public GuardedHandler {
 public:
  explicit ReadyHandler(ApiContext context) : context_(context) {}

 protected:
  void handle(Poco::Net::HTTPServerRequest&, Poco::Net::HTTPServerResponse&) override;

 private:
  ApiContext context_;
};

// GET /metrics: Prometheus text format. Unauthenticated, like /healthz: it holds counts, no
// secrets and no deployment names.
class MetricsHandler : public GuardedHandler {
 public:
  explicit MetricsHandler(ApiContext context) : context_(context) {}

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

// A handler of one deploy: every route under /v1/deploys/{id} shares the id.
class DeployIdHandler : public GuardedHandler {
 public:
  DeployIdHandler(ApiContext context, std::string id) : context_(context), id_(std::move(id)) {}

 protected:
  ApiContext context_;
  std::string id_;
};

// GET /v1/deploys/{id}[?wait=SECONDS]: the report; `wait` long-polls until it is terminal.
class GetDeployHandler : public DeployIdHandler {
 public:
  using DeployIdHandler::DeployIdHandler;

 protected:
  void handle(Poco::Net::HTTPServerRequest&, Poco::Net::HTTPServerResponse&) override;
};

// GET /v1/deploys/{id}/log[?phase=push|install]: the stored, redacted output as text.
class GetDeployLogHandler : public DeployIdHandler {
 public:
  using DeployIdHandler::DeployIdHandler;

 protected:
  void handle(Poco::Net::HTTPServerRequest&, Poco::Net::HTTPServerResponse&) override;
};


// POST /v1/deploys/{id}/cancel: idempotent. A queued job ends `cancelled` at once; a running
// one is told to stop (its processes are killed, its minted key and created project deleted)
// and answered once it has (200), or with its current report after 10 s (202). A finished job
// is answered with its report unchanged.
class CancelDeployHandler : public DeployIdHandler {
 public:
  using DeployIdHandler::DeployIdHandler;

 protected:
  void handle(Poco::Net::HTTPServerRequest&, Poco::Net::HTTPServerResponse&) override;
};

// GET /v1/deploys/{id}/events: Server-Sent Events: `phase`, `log` and, last, `report`, each
// with an `id:`; `Last-Event-ID` (header, or ?last_event_id=) resumes after that id, also after
// a restart of the agent. Idle streams get a comment line every --event-heartbeat-seconds; at
// most --max-event-streams are open at once (503 past it).
class DeployEventsHandler : public DeployIdHandler {
 public:
  using DeployIdHandler::DeployIdHandler;

 protected:
  void handle(Poco::Net::HTTPServerRequest&, Poco::Net::HTTPServerResponse&) override;
};

// DELETE /v1/deploys/{id}: removes a finished job's folder and report (409 while it runs).
class DeleteDeployHandler : public DeployIdHandler {
 public:
  using DeployIdHandler::DeployIdHandler;

 protected:
  void handle(Poco::Net::HTTPServerRequest&, Poco::Net::HTTPServerResponse&) override;
};

// GET /v1/deploys?status=&limit=&cursor=: summaries, newest first, a page at a time.
class ListDeploysHandler : public GuardedHandler {
 public:
  explicit ListDeploysHandler(ApiContext context) : context_(context) {}

 protected:
  void handle(Poco::Net::HTTPServerRequest&, Poco::Net::HTTPServerResponse&) override;

 private:
  ApiContext context_;
};

class RouteFactory : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  explicit RouteFactory(ApiContext context) : context_(context) {}
  Poco::Net::HTTPRequestHandler* createRequestHandler(const Poco::Net::HTTPServerRequest& request) override;

 private:
  // The handler for a request, and the route pattern it matched (for /metrics).
  Poco::Net::HTTPRequestHandler* dispatch(const Poco::Net::HTTPServerRequest& request, std::string& route);
  ApiContext context_;
};

}  // namespace da::api
