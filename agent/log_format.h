// The agent's own log: one line per event on stderr, as text (default) or as JSON objects for
// collectors (--log-format json): {"time","level","job"?,"msg"}. The job id is taken from the
// message, where every job event names it.
#pragma once

#include <memory>
#include <string>

#include <spdlog/formatter.h>

namespace agent {

// "text" or "json"; anything else is a config error caught before this is called.
std::unique_ptr<spdlog::formatter> makeLogFormatter(const std::string& format);

}  // namespace agent
