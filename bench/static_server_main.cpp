// bench-static-server: the reference bench/load.sh compares the agent with. A plain Poco
// HTTPServer that answers every GET with a fixed body read once at start, so what it costs is
// Poco's HTTP handling alone: no routing tables, no authentication, no job store, no JSON.
//
//   bench-static-server --body FILE [--events FILE] [--metrics FILE] [--listen HOST:PORT]
//                       [--max-threads N]
//
// The body served depends only on how the path ends, so bench-load can send the agent's own
// request mix here unchanged: `/metrics` gets --metrics, `.../events` gets --events as
// `text/event-stream` (chunked, like the agent's streams), anything else gets --body as
// `application/json`. bench/load.sh fills the three files with a real report, a real event
// stream and a real scrape taken from the agent in the same run, so sizes match.
//
// Once serving, exactly one line `listening on http://HOST:PORT` goes to stdout (the contract
// scripts/lib/servers.sh reads); it stops on SIGTERM or SIGINT.
#include <signal.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>

#include <Poco/Exception.h>
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/ThreadPool.h>

namespace {

struct FixedBodies {
  std::string report_json;
  std::string event_stream;
  std::string metrics_text;
};

bool endsWith(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string pathOf(const std::string& uri) { return uri.substr(0, uri.find('?')); }

class FixedBodyHandler : public Poco::Net::HTTPRequestHandler {
 public:
  explicit FixedBodyHandler(const FixedBodies& bodies) : bodies_(bodies) {}

  void handleRequest(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response) override {
    if (request.getMethod() != Poco::Net::HTTPRequest::HTTP_GET) {
      response.setStatusAndReason(Poco::Net::HTTPResponse::HTTP_METHOD_NOT_ALLOWED);
      response.setContentLength(0);
      response.send();
      return;
    }
    const std::string path = pathOf(request.getURI());
    if (endsWith(path, "/events")) {
      response.setChunkedTransferEncoding(true);
      response.setContentType("text/event-stream");
      response.set("Cache-Control", "no-cache");
      response.send() << bodies_.event_stream;
      return;
    }
    const bool metrics = path == "/metrics";
    const std::string& body = metrics ? bodies_.metrics_text : bodies_.report_json;
    response.setContentType(metrics ? "text/plain; version=0.0.4" : "application/json");
    response.setContentLength(static_cast<std::streamsize>(body.size()));
    response.send() << body;
  }

 private:
  const FixedBodies& bodies_;
};

class FixedBodyFactory : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  explicit FixedBodyFactory(const FixedBodies& bodies) : bodies_(bodies) {}
  Poco::Net::HTTPRequestHandler* createRequestHandler(const Poco::Net::HTTPServerRequest&) override {
    return new FixedBodyHandler(bodies_);
  }

 private:
  const FixedBodies& bodies_;
};

std::string readWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

[[noreturn]] void usage(const std::string& problem) {
  std::cerr << "bench-static-server: " << problem << "\n"
            << "usage: bench-static-server --body FILE [--events FILE] [--metrics FILE] "
               "[--listen HOST:PORT] [--max-threads N]\n";
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen = "127.0.0.1:0";
  std::string body_file, events_file, metrics_file;
  // The agent's pool is 32 + --max-event-streams (32 by default) = 64 threads. Poco serves a
  // keep-alive connection on one thread until the client closes it, so a smaller pool would
  // queue the load test's persistent clients and measure the pool size, not the handling.
  int max_threads = 64;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) usage("missing value after " + flag);
    const std::string value = argv[++i];
    if (flag == "--listen") listen = value;
    else if (flag == "--body") body_file = value;
    else if (flag == "--events") events_file = value;
    else if (flag == "--metrics") metrics_file = value;
    else if (flag == "--max-threads") max_threads = std::atoi(value.c_str());
    else usage("unknown option " + flag);
  }
  if (body_file.empty()) usage("--body is required");
  if (max_threads < 2) usage("--max-threads must be at least 2");

  // Blocked before any thread starts so every Poco thread inherits the mask and the signal
  // is taken only by sigwait below.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  try {
    FixedBodies bodies;
    bodies.report_json = readWholeFile(body_file);
    bodies.event_stream = events_file.empty() ? std::string() : readWholeFile(events_file);
    bodies.metrics_text = metrics_file.empty() ? bodies.report_json : readWholeFile(metrics_file);

    // The same socket backlog, pool shape, queue, keep-alive and timeout as the agent's
    // ApiServer, so the two differ in what they do per request, not in how they take it.
    Poco::Net::ServerSocket socket(Poco::Net::SocketAddress(listen), 64);
    auto* params = new Poco::Net::HTTPServerParams;
    params->setMaxThreads(max_threads);
    params->setMaxQueued(128);
    params->setTimeout(Poco::Timespan(60, 0));
    params->setKeepAlive(true);
    params->setThreadIdleTime(Poco::Timespan(0, 200000));
    Poco::ThreadPool threads(2, max_threads, 60);
    Poco::Net::HTTPServer server(new FixedBodyFactory(bodies), threads, socket, params);
    server.start();
    std::cout << "listening on http://" << server.socket().address().toString() << std::endl;

    int signal = 0;
    while (sigwait(&stop_signals, &signal) != 0) {
    }
    server.stopAll(true);
    threads.joinAll();
  } catch (const Poco::Exception& e) {
    std::cerr << "bench-static-server: " << e.displayText() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "bench-static-server: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
