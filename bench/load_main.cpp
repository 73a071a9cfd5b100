// bench-load: a bounded load test of the agent's read side while deploys run (bench/load.sh).
//
//   bench-load --base URL --token TOKEN --seconds N [--grace-seconds G]
//              [--status-clients K] [--sse-clients S] [--live-sse-clients L] [--metrics-clients M]
//              [--deploys D --bundle FILE --deploy-key KEY] [--id FINISHED_DEPLOY_ID]
//              [--pid PID] [--rss-interval-ms MS] [--label NAME] [--json FILE]
//
// For N seconds (the window), each client runs closed-loop on its own keep-alive connection:
//   status   GET /v1/deploys/{id} over the known deploys in turn; every fifth request is the
//            list, GET /v1/deploys?limit=20
//   sse      GET /v1/deploys/{id} (was it still running?), then GET /v1/deploys/{id}/events
//            from the start to the `report` event, then GET /v1/deploys/{id} again: ids must be
//            1, 2, ... with nothing missing or repeated, the stream must end right after the
//            report, and the report's status must be the one the final GET answers. Every
//            complete stream of one deploy must carry the same events (a digest compares them),
//            so a live follower that lost an event disagrees with a later replay. L of the S
//            clients (S/2 by default) follow the deploys still running, live; the others replay
//            finished ones; each takes the other kind when there is none of its own.
//   metrics  GET /metrics
// With --deploys D, D bundles are POSTed at the start (Convex-Deploy-Key: KEY, target=prod),
// so deploys queue and run while the clients read. --id names a finished deploy to read too
// (the only one without --deploys; the static reference server answers for any id).
//
// After the window no new request starts; a stream already open is read to its end, and each
// posted deploy is waited for, until the hard stop at N + G seconds, when every connection
// still open is shut down and counted as an error. --pid names a process whose VmRSS, VmHWM,
// threads and open descriptors are sampled every --rss-interval-ms (the agent, or the static
// server). Results go to stdout and, with --json, to FILE. Exit 0 only when there was no error,
// no lost, repeated or out-of-order event, and every posted deploy succeeded.
#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <Poco/Exception.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/StreamCopier.h>
#include <Poco/URI.h>
#include <nlohmann/json.hpp>

namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

struct Options {
  std::string base_url;
  std::string token;
  int seconds = 20;
  int grace_seconds = 120;
  int status_clients = 8;
  int sse_clients = 16;
  int metrics_clients = 4;
  int live_sse_clients = -1;  // half of the SSE clients unless given
  int deploys = 0;
  std::string bundle_file;
  std::string deploy_key;
  std::string fixed_id;
  int pid = 0;
  int rss_interval_ms = 100;
  std::string label = "load";
  std::string json_file;
};

// ---- what the clients measure ------------------------------------------------------------

enum class Kind { kPost, kStatus, kList, kEvents, kMetrics };
constexpr Kind kAllKinds[] = {Kind::kPost, Kind::kStatus, Kind::kList, Kind::kEvents, Kind::kMetrics};

const char* kindName(Kind kind) {
  switch (kind) {
    case Kind::kPost: return "post";
    case Kind::kStatus: return "status";
    case Kind::kList: return "list";
    case Kind::kEvents: return "events";
    case Kind::kMetrics: return "metrics";
  }
  return "?";
}

// Each client thread fills its own tally; they are merged after the threads are joined, so
// counting never makes the clients contend with each other.
struct KindTally {
  uint64_t requests = 0;
  uint64_t errors = 0;
  uint64_t bytes = 0;
  std::vector<double> latencies_ms;  // events: time to the response headers
};

struct Tally {
  std::map<Kind, KindTally> kinds;
  uint64_t streams_complete = 0;
  uint64_t streams_live = 0;  // the deploy was not yet terminal when the stream was opened
  uint64_t events = 0;
  uint64_t heartbeats = 0;
  uint64_t event_order_errors = 0;  // an id missing, repeated or out of order; anything after the report
  uint64_t report_mismatches = 0;   // the report event's status is not the final GET's

  void merge(const Tally& other) {
    for (const auto& [kind, theirs] : other.kinds) {
      KindTally& mine = kinds[kind];
      mine.requests += theirs.requests;
      mine.errors += theirs.errors;
      mine.bytes += theirs.bytes;
      mine.latencies_ms.insert(mine.latencies_ms.end(), theirs.latencies_ms.begin(), theirs.latencies_ms.end());
    }
    streams_complete += other.streams_complete;
    streams_live += other.streams_live;
    events += other.events;
    heartbeats += other.heartbeats;
    event_order_errors += other.event_order_errors;
    report_mismatches += other.report_mismatches;
  }
};

double percentile(std::vector<double> values, double fraction) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t rank = static_cast<size_t>(fraction * static_cast<double>(values.size() - 1) + 0.5);
  return values[std::min(rank, values.size() - 1)];
}

double millisSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// ---- the shared state of one run ----------------------------------------------------------

class Run {
 public:
  explicit Run(const Options& options) : options_(options) {
    const Poco::URI uri(options.base_url);
    host_ = uri.getHost();
    port_ = uri.getPort();
    start_ = Clock::now();
    window_end_ = start_ + std::chrono::seconds(options.seconds);
    hard_stop_ = window_end_ + std::chrono::seconds(options.grace_seconds);
  }

  const Options& options() const { return options_; }
  Clock::time_point start() const { return start_; }
  Clock::time_point windowEnd() const { return window_end_; }
  Clock::time_point hardStop() const { return hard_stop_; }
  bool inWindow() const { return Clock::now() < window_end_ && !hard_stopped_; }
  bool hardStopped() const { return hard_stopped_; }

  std::unique_ptr<Poco::Net::HTTPClientSession> newSession(int timeout_seconds) {
    auto session = std::make_unique<Poco::Net::HTTPClientSession>(host_, port_);
    session->setKeepAlive(true);
    session->setTimeout(Poco::Timespan(timeout_seconds, 0));
    std::lock_guard lock(sessions_mutex_);
    sessions_.insert(session.get());
    return session;
  }
  void forgetSession(Poco::Net::HTTPClientSession* session) {
    std::lock_guard lock(sessions_mutex_);
    sessions_.erase(session);
  }

  // Called once at the hard stop: a shut-down socket makes a blocked read return at once, so
  // every client thread ends and is joined; what it was doing is counted as an error.
  void stopEverything() {
    hard_stopped_ = true;
    ids_changed_.notify_all();
    std::lock_guard lock(sessions_mutex_);
    for (auto* session : sessions_) {
      try {
        session->socket().shutdown();
      } catch (const Poco::Exception&) {
        // not connected: nothing to wake
      }
    }
  }

  // A deploy the run did not post and that has ended (--id): read, never waited for.
  void addFinishedDeploy(const std::string& id) {
    std::lock_guard lock(ids_mutex_);
    known_.push_back(id);
    markFinishedLocked(id);
  }
  void addPostedDeploy(const std::string& id) {
    std::lock_guard lock(ids_mutex_);
    known_.push_back(id);
    posted_.push_back(id);
  }
  void postingFinished() {
    {
      std::lock_guard lock(ids_mutex_);
      posting_finished_ = true;
    }
    ids_changed_.notify_all();
  }
  // Clients start reading once every deploy is posted (a fraction of a second), so that the
  // live followers spread over all of them.
  void waitForPosting() {
    std::unique_lock lock(ids_mutex_);
    ids_changed_.wait_until(lock, window_end_, [&] { return posting_finished_ || hard_stopped_; });
  }
  void markFinished(const std::string& id) {
    std::lock_guard lock(ids_mutex_);
    markFinishedLocked(id);
  }
  // The deploys in turn: `index` picks one, modulo how many there are; nullopt when none.
  std::optional<std::string> anyDeploy(size_t index) {
    std::lock_guard lock(ids_mutex_);
    return pick(known_, index);
  }
  std::optional<std::string> runningDeploy(size_t index) {
    std::lock_guard lock(ids_mutex_);
    std::vector<std::string> running;
    for (const auto& id : posted_) {
      if (!finished_set_.count(id)) running.push_back(id);
    }
    return pick(running, index);
  }
  std::optional<std::string> finishedDeploy(size_t index) {
    std::lock_guard lock(ids_mutex_);
    return pick(finished_, index);
  }
  std::vector<std::string> postedDeploys() {
    std::lock_guard lock(ids_mutex_);
    return posted_;
  }

  void recordError(const std::string& what) {
    std::lock_guard lock(errors_mutex_);
    ++errors_total_;
    if (error_samples_.size() < 20) error_samples_.push_back(what);
  }
  uint64_t errorsTotal() {
    std::lock_guard lock(errors_mutex_);
    return errors_total_;
  }
  std::vector<std::string> errorSamples() {
    std::lock_guard lock(errors_mutex_);
    return error_samples_;
  }

  // Every complete stream of a deploy reports its event count and digest here; any two that
  // differ mean one of them lost, repeated or altered an event.
  void recordStream(const std::string& id, uint64_t events, uint64_t digest) {
    std::lock_guard lock(streams_mutex_);
    auto [it, first] = stream_digests_.emplace(id, std::make_pair(events, digest));
    if (!first && it->second != std::make_pair(events, digest)) {
      ++inconsistent_streams_;
      if (inconsistent_samples_.size() < 5) {
        inconsistent_samples_.push_back(id + ": " + std::to_string(it->second.first) + " events vs " +
                                        std::to_string(events) + " in another stream");
      }
    }
  }
  uint64_t inconsistentStreams() {
    std::lock_guard lock(streams_mutex_);
    return inconsistent_streams_;
  }
  std::vector<std::string> inconsistentSamples() {
    std::lock_guard lock(streams_mutex_);
    return inconsistent_samples_;
  }
  std::map<std::string, uint64_t> eventsPerDeploy() {
    std::lock_guard lock(streams_mutex_);
    std::map<std::string, uint64_t> counts;
    for (const auto& [id, entry] : stream_digests_) counts[id] = entry.first;
    return counts;
  }

 private:
  const Options& options_;
  std::string host_;
  uint16_t port_ = 0;
  Clock::time_point start_, window_end_, hard_stop_;
  std::atomic<bool> hard_stopped_{false};

  std::mutex sessions_mutex_;
  std::set<Poco::Net::HTTPClientSession*> sessions_;

  static std::optional<std::string> pick(const std::vector<std::string>& ids, size_t index) {
    if (ids.empty()) return std::nullopt;
    return ids[index % ids.size()];
  }
  void markFinishedLocked(const std::string& id) {
    if (finished_set_.insert(id).second) finished_.push_back(id);
  }

  std::mutex ids_mutex_;
  std::condition_variable ids_changed_;
  std::vector<std::string> known_;     // --id, then the posted ones
  std::vector<std::string> posted_;
  std::vector<std::string> finished_;  // in the order they were seen to end
  std::set<std::string> finished_set_;
  bool posting_finished_ = false;

  std::mutex errors_mutex_;
  uint64_t errors_total_ = 0;
  std::vector<std::string> error_samples_;

  std::mutex streams_mutex_;
  std::map<std::string, std::pair<uint64_t, uint64_t>> stream_digests_;
  uint64_t inconsistent_streams_ = 0;
  std::vector<std::string> inconsistent_samples_;
};

// ---- HTTP ---------------------------------------------------------------------------------

struct Answer {
  int status = 0;
  std::string body;
};

// One request on the client's keep-alive session; the body is read whole so the connection
// can carry the next request. Network failures throw (Poco::Exception).
Answer exchange(Run& run, Poco::Net::HTTPClientSession& session, const std::string& method, const std::string& target,
                const std::string& body = {}, const std::map<std::string, std::string>& headers = {}) {
  Poco::Net::HTTPRequest request(method, target, Poco::Net::HTTPMessage::HTTP_1_1);
  request.set("Authorization", "Bearer " + run.options().token);
  for (const auto& [name, value] : headers) request.set(name, value);
  if (!body.empty()) request.setContentLength(static_cast<std::streamsize>(body.size()));
  session.sendRequest(request) << body;
  Poco::Net::HTTPResponse response;
  std::istream& in = session.receiveResponse(response);
  Answer answer;
  answer.status = static_cast<int>(response.getStatus());
  Poco::StreamCopier::copyToString(in, answer.body);
  return answer;
}

// A request that must answer 2xx with a body `accept` approves; counts it (and its latency)
// under `kind` and records anything else as an error. Returns the body when it was accepted.
std::optional<std::string> timedGet(Run& run, Poco::Net::HTTPClientSession& session, Tally& tally, Kind kind,
                                    const std::string& target,
                                    const std::function<std::string(const std::string&)>& accept) {
  KindTally& counts = tally.kinds[kind];
  const auto started = Clock::now();
  try {
    Answer answer = exchange(run, session, Poco::Net::HTTPRequest::HTTP_GET, target);
    counts.latencies_ms.push_back(millisSince(started));
    ++counts.requests;
    counts.bytes += answer.body.size();
    std::string problem;
    if (answer.status < 200 || answer.status > 299) {
      problem = "HTTP " + std::to_string(answer.status) + ": " + answer.body.substr(0, 200);
    } else {
      problem = accept(answer.body);
    }
    if (problem.empty()) return answer.body;
    ++counts.errors;
    run.recordError(std::string(kindName(kind)) + " GET " + target + ": " + problem);
  } catch (const Poco::Exception& e) {
    ++counts.requests;
    ++counts.errors;
    session.reset();
    run.recordError(std::string(kindName(kind)) + " GET " + target + ": " + e.displayText() +
                    (run.hardStopped() ? " (hard stop)" : ""));
  } catch (const std::exception& e) {
    ++counts.errors;
    session.reset();
    run.recordError(std::string(kindName(kind)) + " GET " + target + ": " + e.what());
  }
  return std::nullopt;
}

std::optional<Json> parseJson(const std::string& text) {
  Json parsed = Json::parse(text, nullptr, false);
  if (parsed.is_discarded()) return std::nullopt;
  return parsed;
}

bool isTerminal(const std::string& status) {
  return status == "succeeded" || status == "failed" || status == "cancelled";
}

// Accepts a report of deploy `id`; leaves its status in `status_out`.
std::function<std::string(const std::string&)> reportOf(const std::string& id, std::string* status_out = nullptr) {
  return [id, status_out](const std::string& body) -> std::string {
    auto report = parseJson(body);
    if (!report || !report->is_object()) return "not a JSON object";
    if (report->value("id", "") != id) return "report of " + report->value("id", "?") + ", not " + id;
    if (!(*report)["status"].is_string()) return "no status";
    if (status_out) *status_out = (*report)["status"];
    return "";
  };
}

// ---- the clients --------------------------------------------------------------------------

void postDeploys(Run& run, Tally& tally) {
  const Options& options = run.options();
  std::ifstream in(options.bundle_file, std::ios::binary);
  const std::string bundle((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto session = run.newSession(30);
  KindTally& counts = tally.kinds[Kind::kPost];
  for (int i = 0; i < options.deploys && run.inWindow(); ++i) {
    const auto started = Clock::now();
    try {
      Answer answer = exchange(run, *session, Poco::Net::HTTPRequest::HTTP_POST, "/v1/deploys?target=prod", bundle,
                               {{"Content-Type", "application/gzip"}, {"Convex-Deploy-Key", options.deploy_key}});
      counts.latencies_ms.push_back(millisSince(started));
      ++counts.requests;
      auto accepted = parseJson(answer.body);
      if (answer.status != 202 || !accepted || !accepted->is_object() || !(*accepted)["id"].is_string()) {
        ++counts.errors;
        run.recordError("POST /v1/deploys: HTTP " + std::to_string(answer.status) + ": " + answer.body.substr(0, 200));
        continue;
      }
      run.addPostedDeploy((*accepted)["id"]);
    } catch (const Poco::Exception& e) {
      ++counts.requests;
      ++counts.errors;
      session->reset();
      run.recordError("POST /v1/deploys: " + e.displayText());
    }
  }
  run.postingFinished();
  run.forgetSession(session.get());
}

void pollStatus(Run& run, Tally& tally, int client) {
  run.waitForPosting();
  auto session = run.newSession(10);
  for (uint64_t round = 0; run.inWindow(); ++round) {
    if (round % 5 == 4) {
      timedGet(run, *session, tally, Kind::kList, "/v1/deploys?limit=20", [](const std::string& body) {
        auto page = parseJson(body);
        return page && page->is_object() ? "" : "not a JSON object";
      });
      continue;
    }
    auto id = run.anyDeploy(static_cast<size_t>(client) + round);
    if (!id) break;
    std::string status;
    if (timedGet(run, *session, tally, Kind::kStatus, "/v1/deploys/" + *id, reportOf(*id, &status)) &&
        isTerminal(status)) {
      run.markFinished(*id);
    }
  }
  run.forgetSession(session.get());
}

void scrapeMetrics(Run& run, Tally& tally) {
  run.waitForPosting();
  auto session = run.newSession(10);
  while (run.inWindow()) {
    timedGet(run, *session, tally, Kind::kMetrics, "/metrics", [](const std::string& body) {
      return body.find("deploy_agent_") != std::string::npos ? "" : "no deploy_agent_ series";
    });
  }
  run.forgetSession(session.get());
}

// 64-bit FNV-1a: enough to tell two event sequences apart, no dependency needed.
void digestInto(uint64_t& digest, const std::string& text) {
  for (unsigned char c : text) {
    digest ^= c;
    digest *= 1099511628211ULL;
  }
  digest ^= 0xff;  // field separator, so "ab"+"c" and "a"+"bc" differ
  digest *= 1099511628211ULL;
}

struct StreamOutcome {
  bool complete = false;  // ended right after a well-formed report event
  std::string report_status;
  uint64_t events = 0;
  uint64_t digest = 14695981039346656037ULL;
};

// Reads one event stream from its first event. Every problem is recorded as it is found.
StreamOutcome followEvents(Run& run, Poco::Net::HTTPClientSession& session, Tally& tally, const std::string& id) {
  StreamOutcome outcome;
  KindTally& counts = tally.kinds[Kind::kEvents];
  const std::string target = "/v1/deploys/" + id + "/events";
  const auto started = Clock::now();
  try {
    Poco::Net::HTTPRequest request(Poco::Net::HTTPRequest::HTTP_GET, target, Poco::Net::HTTPMessage::HTTP_1_1);
    request.set("Authorization", "Bearer " + run.options().token);
    request.set("Accept", "text/event-stream");
    session.sendRequest(request);
    Poco::Net::HTTPResponse response;
    std::istream& in = session.receiveResponse(response);
    counts.latencies_ms.push_back(millisSince(started));
    ++counts.requests;
    if (response.getStatus() != Poco::Net::HTTPResponse::HTTP_OK) {
      std::string body;
      Poco::StreamCopier::copyToString(in, body);
      ++counts.errors;
      run.recordError("events " + id + ": HTTP " + std::to_string(response.getStatus()) + ": " + body.substr(0, 200));
      return outcome;
    }

    uint64_t expected_id = 1;
    bool report_seen = false;
    bool stream_broken = false;
    std::string event_id, event_type, event_data;
    bool any_field = false;
    auto orderError = [&](const std::string& what) {
      ++tally.event_order_errors;
      stream_broken = true;
      run.recordError("events " + id + ": " + what);
    };
    auto dispatch = [&] {
      if (!any_field) return;
      any_field = false;
      if (event_id.empty() && event_type.empty() && event_data.empty()) return;  // e.g. the retry: hint
      ++outcome.events;
      ++tally.events;
      if (report_seen) orderError("event " + event_id + " after the report");
      if (event_id != std::to_string(expected_id)) {
        orderError("expected id " + std::to_string(expected_id) + ", got '" + event_id + "'");
      }
      expected_id = std::strtoull(event_id.c_str(), nullptr, 10) + 1;
      if (event_type != "phase" && event_type != "log" && event_type != "report") {
        orderError("unknown event type '" + event_type + "'");
      }
      auto data = parseJson(event_data);
      if (!data) orderError("event " + event_id + " data is not JSON");
      if (event_type == "report" && data && data->is_object()) {
        report_seen = true;
        outcome.report_status = data->value("status", "");
      }
      digestInto(outcome.digest, event_id);
      digestInto(outcome.digest, event_type);
      digestInto(outcome.digest, event_data);
      event_id.clear();
      event_type.clear();
      event_data.clear();
    };
    std::string line;
    while (std::getline(in, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) {
        dispatch();
        continue;
      }
      if (line[0] == ':') {
        ++tally.heartbeats;
        continue;
      }
      const size_t colon = line.find(':');
      const std::string field = line.substr(0, colon);
      std::string value = colon == std::string::npos ? "" : line.substr(colon + 1);
      if (!value.empty() && value[0] == ' ') value.erase(0, 1);
      any_field = true;
      if (field == "id") event_id = value;
      else if (field == "event") event_type = value;
      else if (field == "data") event_data += (event_data.empty() ? "" : "\n") + value;
    }
    dispatch();
    if (run.hardStopped() && !report_seen) {
      ++counts.errors;
      session.reset();
      run.recordError("events " + id + ": still open at the hard stop after " + std::to_string(outcome.events) + " events");
      return outcome;
    }
    if (!report_seen) {
      ++counts.errors;
      run.recordError("events " + id + ": the stream ended after " + std::to_string(outcome.events) +
                      " events without a report");
      session.reset();
      return outcome;
    }
    if (in.bad()) {
      ++counts.errors;
      run.recordError("events " + id + ": read error after the report");
      session.reset();
      return outcome;
    }
    outcome.complete = !stream_broken;
  } catch (const Poco::Exception& e) {
    ++counts.requests;
    ++counts.errors;
    session.reset();
    run.recordError("events " + id + ": " + e.displayText() + (run.hardStopped() ? " (hard stop)" : ""));
  }
  return outcome;
}

// A live follower reads the deploys still running, in turn (client i starts with deploy i, so
// the followers spread over all of them); a replayer reads the finished ones. Either takes the
// other kind when there is none of its own.
void followStreams(Run& run, Tally& tally, int client, bool live) {
  run.waitForPosting();
  // Longer than any heartbeat interval: a live stream may be idle that long between lines.
  auto session = run.newSession(60);
  for (uint64_t round = 0; run.inWindow(); ++round) {
    const size_t turn = static_cast<size_t>(client) + round;
    auto id = live ? run.runningDeploy(turn) : run.finishedDeploy(turn);
    if (!id) id = live ? run.finishedDeploy(turn) : run.runningDeploy(turn);
    if (!id) id = run.anyDeploy(turn);
    if (!id) break;
    std::string status_before, status_after;
    if (!timedGet(run, *session, tally, Kind::kStatus, "/v1/deploys/" + *id, reportOf(*id, &status_before))) continue;
    StreamOutcome stream = followEvents(run, *session, tally, *id);
    if (!stream.complete) continue;
    if (!timedGet(run, *session, tally, Kind::kStatus, "/v1/deploys/" + *id, reportOf(*id, &status_after))) continue;
    ++tally.streams_complete;
    if (!isTerminal(status_before)) ++tally.streams_live;
    if (stream.report_status != status_after || !isTerminal(status_after)) {
      ++tally.report_mismatches;
      run.recordError("events " + *id + ": the report event says '" + stream.report_status + "', GET says '" +
                      status_after + "'");
      continue;
    }
    run.markFinished(*id);
    run.recordStream(*id, stream.events, stream.digest);
  }
  run.forgetSession(session.get());
}

// ---- the process being measured -----------------------------------------------------------

struct ProcessSample {
  double at_s = 0;
  long rss_kb = -1;
  long hwm_kb = -1;
  long threads = -1;
  long fds = -1;
};

ProcessSample sampleProcess(int pid, Clock::time_point start) {
  ProcessSample sample;
  sample.at_s = millisSince(start) / 1000.0;
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    auto number = [&line] { return std::strtol(line.c_str() + line.find(':') + 1, nullptr, 10); };
    if (line.rfind("VmRSS:", 0) == 0) sample.rss_kb = number();
    else if (line.rfind("VmHWM:", 0) == 0) sample.hwm_kb = number();
    else if (line.rfind("Threads:", 0) == 0) sample.threads = number();
  }
  if (DIR* dir = opendir(("/proc/" + std::to_string(pid) + "/fd").c_str())) {
    sample.fds = 0;
    while (const dirent* entry = readdir(dir)) {
      if (entry->d_name[0] != '.') ++sample.fds;
    }
    closedir(dir);
  }
  return sample;
}

// ---- the run ------------------------------------------------------------------------------

// After the window: every posted deploy must end, and succeed. Long polls, bounded by the
// hard stop; returns id -> final report.
std::map<std::string, Json> awaitDeploys(Run& run) {
  std::map<std::string, Json> finals;
  auto session = run.newSession(40);
  for (const std::string& id : run.postedDeploys()) {
    while (!run.hardStopped()) {
      const auto left = std::chrono::duration_cast<std::chrono::seconds>(run.hardStop() - Clock::now()).count();
      if (left <= 0) break;
      try {
        Answer answer = exchange(run, *session, Poco::Net::HTTPRequest::HTTP_GET,
                                 "/v1/deploys/" + id + "?wait=" + std::to_string(std::min<long>(left, 30)));
        auto report = parseJson(answer.body);
        if (answer.status != 200 || !report || !report->is_object()) {
          run.recordError("wait " + id + ": HTTP " + std::to_string(answer.status) + ": " + answer.body.substr(0, 200));
          break;
        }
        if (isTerminal(report->value("status", ""))) {
          finals[id] = *report;
          break;
        }
      } catch (const Poco::Exception& e) {
        session->reset();
        run.recordError("wait " + id + ": " + e.displayText());
        break;
      }
    }
  }
  run.forgetSession(session.get());
  return finals;
}

[[noreturn]] void usage(const std::string& problem) {
  std::cerr << "bench-load: " << problem << "\n"
            << "usage: bench-load --base URL --token TOKEN --seconds N [--grace-seconds G]\n"
               "                  [--status-clients K] [--sse-clients S] [--live-sse-clients L]\n"
               "                  [--metrics-clients M] [--deploys D --bundle FILE --deploy-key KEY]\n"
               "                  [--id FINISHED_DEPLOY_ID]\n"
               "                  [--pid PID] [--rss-interval-ms MS] [--label NAME] [--json FILE]\n";
  std::exit(2);
}

Options parseOptions(int argc, char** argv) {
  Options options;
  const std::map<std::string, std::string*> texts = {
      {"--base", &options.base_url},     {"--token", &options.token},    {"--bundle", &options.bundle_file},
      {"--deploy-key", &options.deploy_key}, {"--id", &options.fixed_id}, {"--label", &options.label},
      {"--json", &options.json_file}};
  const std::map<std::string, int*> numbers = {
      {"--seconds", &options.seconds},           {"--grace-seconds", &options.grace_seconds},
      {"--status-clients", &options.status_clients}, {"--sse-clients", &options.sse_clients},
      {"--metrics-clients", &options.metrics_clients}, {"--deploys", &options.deploys},
      {"--live-sse-clients", &options.live_sse_clients},
      {"--pid", &options.pid},                   {"--rss-interval-ms", &options.rss_interval_ms}};
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) usage("missing value after " + flag);
    const std::string value = argv[++i];
    if (auto it = texts.find(flag); it != texts.end()) {
      *it->second = value;
    } else if (auto it = numbers.find(flag); it != numbers.end()) {
      char* end = nullptr;
      const long number = std::strtol(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || number < 0 || number > 100000000) usage(flag + ": not a number: " + value);
      *it->second = static_cast<int>(number);
    } else {
      usage("unknown option " + flag);
    }
  }
  if (options.base_url.empty() || options.token.empty()) usage("--base and --token are required");
  if (options.seconds < 1) usage("--seconds must be at least 1");
  if (options.deploys > 0 && (options.bundle_file.empty() || options.deploy_key.empty())) {
    usage("--deploys needs --bundle and --deploy-key");
  }
  if (options.deploys == 0 && options.fixed_id.empty()) usage("give --deploys D or --id DEPLOY_ID");
  if (options.deploys > 0 && !std::ifstream(options.bundle_file)) usage("cannot read " + options.bundle_file);
  if (options.rss_interval_ms < 10) options.rss_interval_ms = 10;
  if (options.live_sse_clients < 0 || options.live_sse_clients > options.sse_clients) {
    options.live_sse_clients = options.sse_clients / 2;
  }
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parseOptions(argc, argv);
  Run run(options);

  // The sampler runs until told to stop (after the last client ends), so "end" is the memory
  // the process keeps once the load is gone.
  std::vector<ProcessSample> samples;
  std::mutex samples_mutex;
  std::condition_variable sampler_wake;
  bool sampler_stop = false;
  std::optional<ProcessSample> at_window_end;
  std::thread sampler;
  if (options.pid > 0) {
    sampler = std::thread([&] {
      std::unique_lock lock(samples_mutex);
      while (!sampler_stop) {
        lock.unlock();
        ProcessSample sample = sampleProcess(options.pid, run.start());
        lock.lock();
        samples.push_back(sample);
        if (!at_window_end && Clock::now() >= run.windowEnd()) at_window_end = sample;
        sampler_wake.wait_for(lock, std::chrono::milliseconds(options.rss_interval_ms));
      }
    });
  }

  // The watchdog ends everything at the hard stop, whatever a client is blocked on.
  std::mutex watchdog_mutex;
  std::condition_variable watchdog_wake;
  bool clients_done = false;
  std::thread watchdog([&] {
    std::unique_lock lock(watchdog_mutex);
    if (!watchdog_wake.wait_until(lock, run.hardStop(), [&] { return clients_done; })) {
      lock.unlock();
      run.stopEverything();
    }
  });

  const int client_count = 1 + options.status_clients + options.sse_clients + options.metrics_clients;
  std::vector<Tally> tallies(static_cast<size_t>(client_count));
  std::vector<std::thread> clients;
  size_t next_tally = 0;
  if (!options.fixed_id.empty()) run.addFinishedDeploy(options.fixed_id);
  if (options.deploys > 0) {
    clients.emplace_back(postDeploys, std::ref(run), std::ref(tallies[next_tally++]));
  } else {
    run.postingFinished();
    ++next_tally;
  }
  for (int i = 0; i < options.status_clients; ++i) {
    clients.emplace_back(pollStatus, std::ref(run), std::ref(tallies[next_tally++]), i);
  }
  for (int i = 0; i < options.sse_clients; ++i) {
    clients.emplace_back(followStreams, std::ref(run), std::ref(tallies[next_tally++]), i,
                         i < options.live_sse_clients);
  }
  for (int i = 0; i < options.metrics_clients; ++i) {
    clients.emplace_back(scrapeMetrics, std::ref(run), std::ref(tallies[next_tally++]));
  }
  for (auto& client : clients) client.join();
  const double clients_elapsed_s = millisSince(run.start()) / 1000.0;

  std::map<std::string, Json> finals;
  if (options.deploys > 0) finals = awaitDeploys(run);
  {
    std::lock_guard lock(watchdog_mutex);
    clients_done = true;
  }
  watchdog_wake.notify_all();
  watchdog.join();
  const double elapsed_s = millisSince(run.start()) / 1000.0;

  std::optional<ProcessSample> end_sample;
  if (sampler.joinable()) {
    end_sample = sampleProcess(options.pid, run.start());
    {
      std::lock_guard lock(samples_mutex);
      sampler_stop = true;
    }
    sampler_wake.notify_all();
    sampler.join();
    samples.push_back(*end_sample);
  }

  Tally total;
  for (const auto& tally : tallies) total.merge(tally);

  // ---- verdicts ----
  std::vector<std::string> deploy_problems;
  std::vector<double> deploy_total_ms;  // from the POST to the end, queueing included
  std::vector<double> deploy_run_ms;    // install + push + the rest of the run, no queueing
  size_t deploys_succeeded = 0;
  const auto events_per_deploy = run.eventsPerDeploy();
  for (const std::string& id : run.postedDeploys()) {
    if (options.deploys == 0) break;
    auto it = finals.find(id);
    if (it == finals.end()) {
      deploy_problems.push_back(id + ": not finished by the hard stop");
      continue;
    }
    const std::string status = it->second.value("status", "");
    if (status == "succeeded") ++deploys_succeeded;
    else deploy_problems.push_back(id + ": " + status + " " + it->second["error"].dump());
    const Json& timings = it->second["timings_ms"];
    if (timings.is_object() && timings["total"].is_number()) deploy_total_ms.push_back(timings["total"].get<double>());
    if (timings.is_object() && timings["run"].is_number()) deploy_run_ms.push_back(timings["run"].get<double>());
    if (!events_per_deploy.count(id)) deploy_problems.push_back(id + ": no complete event stream was read");
  }
  const uint64_t errors = run.errorsTotal();
  const uint64_t inconsistent = run.inconsistentStreams();
  const bool passed = errors == 0 && total.event_order_errors == 0 && total.report_mismatches == 0 &&
                      inconsistent == 0 && deploy_problems.empty() &&
                      (options.deploys == 0 || static_cast<int>(run.postedDeploys().size()) == options.deploys);

  // ---- report ----
  Json result;
  result["label"] = options.label;
  result["base"] = options.base_url;
  result["window_s"] = options.seconds;
  result["clients_elapsed_s"] = clients_elapsed_s;
  result["elapsed_s"] = elapsed_s;
  result["clients"] = {{"status", options.status_clients}, {"sse", options.sse_clients},
                       {"sse_live", options.live_sse_clients}, {"metrics", options.metrics_clients}};
  for (Kind kind : kAllKinds) {
    const KindTally& counts = total.kinds[kind];
    result["kinds"][kindName(kind)] = {
        {"requests", counts.requests},
        {"errors", counts.errors},
        {"bytes", counts.bytes},
        {"per_second", static_cast<double>(counts.requests) / options.seconds},
        {"p50_ms", percentile(counts.latencies_ms, 0.50)},
        {"p99_ms", percentile(counts.latencies_ms, 0.99)},
        {"max_ms", counts.latencies_ms.empty() ? 0.0 : *std::max_element(counts.latencies_ms.begin(), counts.latencies_ms.end())}};
  }
  result["sse"] = {{"streams_complete", total.streams_complete},
                   {"streams_live", total.streams_live},
                   {"events", total.events},
                   {"heartbeats", total.heartbeats},
                   {"event_order_errors", total.event_order_errors},
                   {"report_mismatches", total.report_mismatches},
                   {"inconsistent_streams", inconsistent},
                   {"inconsistent_samples", run.inconsistentSamples()},
                   {"events_per_deploy", events_per_deploy}};
  result["deploys"] = {{"asked", options.deploys},
                       {"posted", options.deploys > 0 ? run.postedDeploys().size() : 0},
                       {"finished", finals.size()},
                       {"succeeded", deploys_succeeded},
                       {"problems", deploy_problems},
                       {"total_ms_p50", percentile(deploy_total_ms, 0.5)},
                       {"run_ms_p50", percentile(deploy_run_ms, 0.5)},
                       {"run_ms_max", deploy_run_ms.empty() ? 0.0 : *std::max_element(deploy_run_ms.begin(), deploy_run_ms.end())},
                       {"total_ms_max", deploy_total_ms.empty() ? 0.0 : *std::max_element(deploy_total_ms.begin(), deploy_total_ms.end())}};
  result["errors"] = errors;
  result["error_samples"] = run.errorSamples();
  result["hard_stopped"] = run.hardStopped();
  if (!samples.empty()) {
    long peak_rss = 0, peak_threads = 0;
    for (const auto& sample : samples) {
      peak_rss = std::max(peak_rss, sample.rss_kb);
      peak_threads = std::max(peak_threads, sample.threads);
    }
    const ProcessSample& first = samples.front();
    const ProcessSample& last = samples.back();
    result["process"] = {{"pid", options.pid},
                         {"samples", samples.size()},
                         {"rss_start_kb", first.rss_kb},
                         {"rss_peak_kb", peak_rss},
                         {"rss_window_end_kb", at_window_end ? at_window_end->rss_kb : last.rss_kb},
                         {"rss_end_kb", last.rss_kb},
                         {"hwm_start_kb", first.hwm_kb},
                         {"hwm_end_kb", last.hwm_kb},
                         {"threads_start", first.threads},
                         {"threads_peak", peak_threads},
                         {"threads_end", last.threads},
                         {"fds_start", first.fds},
                         {"fds_end", last.fds}};
  }
  result["passed"] = passed;

  std::cout << result.dump(2) << std::endl;
  if (!options.json_file.empty()) std::ofstream(options.json_file) << result.dump(2) << "\n";
  return passed ? 0 : 1;
}
