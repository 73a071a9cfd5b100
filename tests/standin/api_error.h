// Error and reply types shared by every stand-in route. Handlers throw ApiError; the common
// handler turns it into the `{"code","message"}` body that Convex services answer with.
#pragma once

#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace standin {

class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string code, const std::string& message)
      : std::runtime_error(message), status_(status), code_(std::move(code)) {}

  int status() const { return status_; }
  const std::string& code() const { return code_; }

  nlohmann::json body() const { return {{"code", code_}, {"message", what()}}; }

 private:
  int status_;
  std::string code_;
};

inline ApiError badRequest(const std::string& message) {
  return ApiError(400, "BadRequest", message);
}

// What a route answers when it succeeds. A null body is sent as an empty body (the Management
// API answers many writes with 200 and nothing else).
struct Reply {
  int status = 200;
  nlohmann::json body = nlohmann::json::object();
  std::string retry_after = {};  // a Retry-After header when not empty
};

inline Reply emptyReply() { return Reply{200, nullptr}; }

}  // namespace standin
