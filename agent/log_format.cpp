#include "log_format.h"

#include <chrono>
#include <regex>

#include <nlohmann/json.hpp>
#include <spdlog/pattern_formatter.h>

#include "util/ids.h"

namespace agent {

namespace {

class JsonLineFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const std::string text(msg.payload.data(), msg.payload.size());
    nlohmann::json line;
    line["time"] = isoTime(msg.time);
    line["level"] = std::string(spdlog::level::to_string_view(msg.level).data(),
                                spdlog::level::to_string_view(msg.level).size());
    static const std::regex kJobId("dep_[0-9a-f]{24}");
    if (std::smatch match; std::regex_search(text, match, kJobId)) line["job"] = match.str();
    line["msg"] = text;
    // Output a tool printed need not be UTF-8; the line must still be valid JSON.
    const std::string encoded = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    dest.append(encoded.data(), encoded.data() + encoded.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonLineFormatter>(); }

 private:
  static std::string isoTime(spdlog::log_clock::time_point when) {
    return da::formatRfc3339(std::chrono::duration_cast<std::chrono::milliseconds>(when.time_since_epoch()).count());
  }
};

}  // namespace

std::unique_ptr<spdlog::formatter> makeLogFormatter(const std::string& format) {
  if (format == "json") return std::make_unique<JsonLineFormatter>();
  return std::make_unique<spdlog::pattern_formatter>("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
}

}  // namespace agent
