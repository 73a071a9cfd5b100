// Internal to src/bundle: how intake code reports a refusal from deep inside a helper.
// Helpers throw Refusal; the public entry points (extractArchive, inspectApp) catch it and
// return the IntakeError, so no exception ever leaves the module.
#pragma once

#include <exception>
#include <string>
#include <utility>

#include "bundle/intake.h"

namespace da::bundle::detail {

class Refusal : public std::exception {
 public:
  explicit Refusal(IntakeError error) : error_(std::move(error)) {}
  const IntakeError& error() const { return error_; }
  const char* what() const noexcept override { return error_.message.c_str(); }

 private:
  IntakeError error_;
};

[[noreturn]] inline void refuse(std::string reason, std::string message, std::string entry = {},
                                std::string limit = {}) {
  throw Refusal(IntakeError{std::move(reason), std::move(message), std::move(entry),
                            std::move(limit)});
}

}  // namespace da::bundle::detail
