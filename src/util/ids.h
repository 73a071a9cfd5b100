#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace da {

// "dep_" + 24 lowercase hex characters from the OS random source.
std::string newDeployId();
bool isValidDeployId(std::string_view id);

// Milliseconds since the Unix epoch, and its RFC 3339 rendering (UTC, millisecond precision).
int64_t nowUnixMillis();
std::string formatRfc3339(int64_t unix_millis);

// Constant-time comparison for tokens.
bool constantTimeEquals(std::string_view a, std::string_view b);

}  // namespace da
