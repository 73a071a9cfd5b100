#include "api/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

namespace da::api {

namespace {

// Phases run from tens of milliseconds (a key mint) to the ten-minute timeouts.
const prometheus::Histogram::BucketBoundaries kPhaseBuckets = {0.05, 0.1, 0.25, 0.5, 1,   2.5, 5,
                                                               10,   20,  30,   60,  120, 300, 600};

}  // namespace

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
  jobs_ = &prometheus::BuildCounter()
               .Name("deploy_agent_jobs_total")
               .Help("Deploys that ended, by status and error reason")
               .Register(*registry_);
  phase_seconds_ = &prometheus::BuildHistogram()
                        .Name("deploy_agent_phase_duration_seconds")
                        .Help("How long each phase of a finished deploy took")
                        .Register(*registry_);
  requests_ = &prometheus::BuildCounter()
                   .Name("deploy_agent_http_requests_total")
                   .Help("HTTP requests answered, by route and status code")
                   .Register(*registry_);
  callback_attempts_ = &prometheus::BuildCounter()
                            .Name("deploy_agent_callback_attempts_total")
                            .Help("Webhook (callback_url) attempts, by what followed: delivered, retrying, failed")
                            .Register(*registry_);
  bytes_received_ = &prometheus::BuildCounter()
                         .Name("deploy_agent_bundle_bytes_received_total")
                         .Help("Bundle bytes received by POST /v1/deploys")
                         .Register(*registry_)
                         .Add({});
  queue_depth_ = &prometheus::BuildGauge()
                      .Name("deploy_agent_queue_depth")
                      .Help("Deploys accepted and waiting for a worker")
                      .Register(*registry_)
                      .Add({});
  running_ = &prometheus::BuildGauge()
                  .Name("deploy_agent_jobs_running")
                  .Help("Deploys running now")
                  .Register(*registry_)
                  .Add({});
  sse_open_ = &prometheus::BuildGauge()
                   .Name("deploy_agent_sse_streams_open")
                   .Help("Event streams (GET /v1/deploys/{id}/events) open now")
                   .Register(*registry_)
                   .Add({});
  draining_ = &prometheus::BuildGauge()
                   .Name("deploy_agent_draining")
                   .Help("1 while the agent drains after SIGTERM and takes no new deploys")
                   .Register(*registry_)
                   .Add({});
}

Metrics::~Metrics() = default;

void Metrics::jobFinished(const DeployReport& report) {
  jobs_->Add({{"status", statusName(report.status)}, {"reason", report.error ? report.error->reason : ""}}).Increment();
  for (const char* phase : {"deploy_key", "install", "env", "push", "push_wait", "run"}) {
    auto timing = report.timings_ms.find(phase);
    if (timing == report.timings_ms.end()) continue;
    phase_seconds_->Add({{"phase", phase}}, kPhaseBuckets).Observe(static_cast<double>(timing->second) / 1000.0);
  }
}

void Metrics::callbackAttempt(const std::string& outcome) {
  callback_attempts_->Add({{"outcome", outcome}}).Increment();
}

void Metrics::requestAnswered(const std::string& route, int status) {
  requests_->Add({{"route", route}, {"code", std::to_string(status)}}).Increment();
}

void Metrics::bytesReceived(uint64_t bytes) { bytes_received_->Increment(static_cast<double>(bytes)); }

void Metrics::sseStreamOpened() { sse_open_->Increment(); }
void Metrics::sseStreamClosed() { sse_open_->Decrement(); }

std::string Metrics::render(const Now& now) {
  queue_depth_->Set(static_cast<double>(now.queued));
  running_->Set(static_cast<double>(now.running));
  draining_->Set(now.draining ? 1 : 0);
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace da::api
