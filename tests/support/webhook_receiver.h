// A webhook receiver for end-to-end tests: a real Poco HTTP server on 127.0.0.1, port 0, that
// answers each POST with the next status of its script (then 200) and keeps every request it
// got, so a test can wait (bounded) for the n-th delivery and read what the agent sent.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/StreamCopier.h>

namespace testsupport {

class WebhookReceiver {
 public:
  struct Request {
    std::string method;
    std::string path;  // with the query
    std::map<std::string, std::string> headers;
    std::string body;
    int answered = 0;  // the status it was answered with
  };

  // `answer_delay`: how long each answer takes, for a receiver that is slow to respond.
  explicit WebhookReceiver(std::vector<int> script = {}, std::chrono::milliseconds answer_delay = {})
      : script_(script.begin(), script.end()), answer_delay_(answer_delay) {
    socket_ = std::make_unique<Poco::Net::ServerSocket>(Poco::Net::SocketAddress("127.0.0.1", 0));
    auto* params = new Poco::Net::HTTPServerParams;
    params->setKeepAlive(false);
    server_ = std::make_unique<Poco::Net::HTTPServer>(new Factory(*this), *socket_, params);
    server_->start();
  }
  ~WebhookReceiver() { server_->stopAll(true); }

  uint16_t port() const { return socket_->address().port(); }
  std::string hostPort() const { return "127.0.0.1:" + std::to_string(port()); }
  std::string url(const std::string& path = "/hooks/deploys") const { return "http://" + hostPort() + path; }

  // Waits until `count` requests came (or `timeout`); returns what came.
  std::vector<Request> waitFor(size_t count, std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    std::unique_lock lock(mutex_);
    arrived_.wait_for(lock, timeout, [&] { return requests_.size() >= count; });
    return requests_;
  }
  std::vector<Request> requests() {
    std::lock_guard lock(mutex_);
    return requests_;
  }

 private:
  class Handler : public Poco::Net::HTTPRequestHandler {
   public:
    explicit Handler(WebhookReceiver& receiver) : receiver_(receiver) {}
    void handleRequest(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response) override {
      Request seen;
      seen.method = request.getMethod();
      seen.path = request.getURI();
      for (const auto& [name, value] : request) seen.headers[name] = value;
      std::ostringstream body;
      Poco::StreamCopier::copyStream(request.stream(), body);
      seen.body = body.str();
      int status = 200;
      {
        std::lock_guard lock(receiver_.mutex_);
        if (!receiver_.script_.empty()) {
          status = receiver_.script_.front();
          receiver_.script_.pop_front();
        }
      }
      seen.answered = status;
      if (receiver_.answer_delay_.count() > 0) std::this_thread::sleep_for(receiver_.answer_delay_);
      response.setStatus(static_cast<Poco::Net::HTTPResponse::HTTPStatus>(status));
      response.setContentType("text/plain");
      response.send() << "answered " << status;
      {
        // Recorded once answered: a test that saw it may expect the agent to have the answer.
        std::lock_guard lock(receiver_.mutex_);
        receiver_.requests_.push_back(std::move(seen));
      }
      receiver_.arrived_.notify_all();
    }

   private:
    WebhookReceiver& receiver_;
  };
  class Factory : public Poco::Net::HTTPRequestHandlerFactory {
   public:
    explicit Factory(WebhookReceiver& receiver) : receiver_(receiver) {}
    Poco::Net::HTTPRequestHandler* createRequestHandler(const Poco::Net::HTTPServerRequest&) override {
      return new Handler(receiver_);
    }

   private:
    WebhookReceiver& receiver_;
  };

  std::mutex mutex_;
  std::condition_variable arrived_;
  std::deque<int> script_;
  std::chrono::milliseconds answer_delay_;
  std::vector<Request> requests_;
  std::unique_ptr<Poco::Net::ServerSocket> socket_;
  std::unique_ptr<Poco::Net::HTTPServer> server_;
};

}  // namespace testsupport
