// The agent's Prometheus metrics, kept with prometheus-cpp's registry and rendered in the text
// exposition format for GET /metrics. Counters are updated where things happen (a job ends, a
// request is answered, an upload arrives); gauges of the current state are read at scrape time.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "report/deploy_report.h"

namespace prometheus {
class Registry;
template <typename T> class Family;
class Counter;
class Gauge;
class Histogram;
}  // namespace prometheus

namespace da::api {

class Metrics {
 public:
  Metrics();
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // A job reached a terminal status: counted by status and reason, its phases observed.
  void jobFinished(const DeployReport& report);
  // A request was answered; `route` is the route's pattern ("/v1/deploys/{id}"), never a raw path.
  void requestAnswered(const std::string& route, int status);
  void bytesReceived(uint64_t bytes);
  void sseStreamOpened();
  void sseStreamClosed();
  // A callback attempt ended: "delivered", "retrying" (a retry is scheduled) or "failed" (for good).
  void callbackAttempt(const std::string& outcome);

  struct Now {
    size_t queued = 0;
    size_t running = 0;
    bool draining = false;
  };
  // The text exposition format (version 0.0.4), with the gauges set to `now`.
  std::string render(const Now& now);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* jobs_;
  prometheus::Family<prometheus::Histogram>* phase_seconds_;
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Family<prometheus::Counter>* callback_attempts_;
  prometheus::Counter* bytes_received_;
  prometheus::Gauge* queue_depth_;
  prometheus::Gauge* running_;
  prometheus::Gauge* sse_open_;
  prometheus::Gauge* draining_;
};

}  // namespace da::api
