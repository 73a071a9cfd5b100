#include "convex/retry_policy.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <random>
#include <regex>
#include <string>
#include <thread>


namespace da::convex {

using std::chrono::milliseconds;

double RetryPolicy::draw() const {
  double value;
  if (random) {
    value = random();
  } else {
    thread_local std::mt19937_64 engine{std::random_device{}()};
    value = std::uniform_real_distribution<double>(0.0, 1.0)(engine);
  }
  if (!(value >= 0.0)) return 0.0;  // NaN too
  return std::min(value, 1.0);
}

bool RetryPolicy::wait(milliseconds delay, const std::atomic<bool>* cancel) const {
  return sleep ? sleep(delay, cancel) : sleepUnlessCancelled(delay, cancel);
}

std::chrono::steady_clock::time_point RetryPolicy::now() const {
  return clock ? clock() : std::chrono::steady_clock::now();
}

std::chrono::system_clock::time_point RetryPolicy::wallNow() const {
  return wall_clock ? wall_clock() : std::chrono::system_clock::now();
}

namespace {

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
int64_t daysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

int monthNumber(const std::string& name) {
  static const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  for (int i = 0; i < 12; ++i) {
    if (name == kMonths[i]) return i + 1;
  }
  return 0;
}

// The three HTTP-date forms of RFC 9110 section 5.6.7, exactly (GMT only):
//   IMF-fixdate  "Sun, 06 Nov 1994 08:49:37 GMT"
//   RFC 850      "Sunday, 06-Nov-94 08:49:37 GMT"
//   asctime      "Sun Nov  6 08:49:37 1994"
std::optional<std::chrono::system_clock::time_point> parseHttpDate(const std::string& text) {
  static const std::regex kImf(R"(^[A-Z][a-z]{2}, (\d{2}) ([A-Z][a-z]{2}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT$)");
  static const std::regex kRfc850(
      R"(^[A-Z][a-z]{5,8}, (\d{2})-([A-Z][a-z]{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) GMT$)");
  static const std::regex kAsctime(R"(^[A-Z][a-z]{2} ([A-Z][a-z]{2}) ([ \d]\d) (\d{2}):(\d{2}):(\d{2}) (\d{4})$)");
  std::smatch m;
  int64_t year = 0;
  int month = 0, day = 0, hour = 0, minute = 0, second = 0;
  auto num = [](const std::string& s) { return std::stoi(s); };
  if (std::regex_match(text, m, kImf)) {
    day = num(m[1]), month = monthNumber(m[2]), year = num(m[3]);
    hour = num(m[4]), minute = num(m[5]), second = num(m[6]);
  } else if (std::regex_match(text, m, kRfc850)) {
    day = num(m[1]), month = monthNumber(m[2]);
    const int yy = num(m[3]);
    year = yy < 70 ? 2000 + yy : 1900 + yy;
    hour = num(m[4]), minute = num(m[5]), second = num(m[6]);
  } else if (std::regex_match(text, m, kAsctime)) {
    month = monthNumber(m[1]), day = num(m[2]);
    hour = num(m[3]), minute = num(m[4]), second = num(m[5]), year = num(m[6]);
  } else {
    return std::nullopt;
  }
  if (month == 0 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) return std::nullopt;
  const int64_t seconds = daysFromCivil(year, static_cast<unsigned>(month), static_cast<unsigned>(day)) * 86400 +
                          hour * 3600 + minute * 60 + second;
  return std::chrono::system_clock::time_point(std::chrono::seconds(seconds));
}

}  // namespace

milliseconds backoffDelay(const RetryPolicy& policy, int retry, milliseconds previous) {
  const double base = static_cast<double>(std::max<int64_t>(0, policy.base_delay.count()));
  const double cap = std::max(base, static_cast<double>(std::max<int64_t>(0, policy.max_delay.count())));
  const int exponent = std::clamp(retry - 1, 0, 62);
  const double step = std::min(cap, base * std::ldexp(1.0, exponent));
  double delay = step;
  switch (policy.jitter) {
    case Jitter::kNone:
      break;
    case Jitter::kFull:
      delay = policy.draw() * step;
      break;
    case Jitter::kDecorrelated: {
      // The first retry grows from base itself: uniform in [base, 3 * base].
      const double last = previous.count() > 0 ? static_cast<double>(previous.count()) : base;
      const double upper = std::max(base, 3.0 * last);
      delay = std::min(cap, base + policy.draw() * (upper - base));
      break;
    }
  }
  return milliseconds(static_cast<int64_t>(std::llround(std::clamp(delay, 0.0, cap))));
}

std::optional<milliseconds> parseRetryAfter(std::string_view value, std::chrono::system_clock::time_point now) {
  while (!value.empty() && std::isspace(static_cast<unsigned char>(value.front()))) value.remove_prefix(1);
  while (!value.empty() && std::isspace(static_cast<unsigned char>(value.back()))) value.remove_suffix(1);
  if (value.empty()) return std::nullopt;
  if (std::all_of(value.begin(), value.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
    if (value.size() > 9) return milliseconds(int64_t{999999999} * 1000);  // absurd; the budget decides
    return milliseconds(std::stoll(std::string(value)) * 1000);
  }
  const auto at = parseHttpDate(std::string(value));
  if (!at) return std::nullopt;
  return std::max(std::chrono::duration_cast<milliseconds>(*at - now), milliseconds(0));
}

bool isRetryableStatus(int status) {
  return status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
}

bool sleepUnlessCancelled(milliseconds delay, const std::atomic<bool>* cancel) {
  const auto until = std::chrono::steady_clock::now() + delay;
  while (true) {
    if (cancel && cancel->load()) return false;
    const auto now = std::chrono::steady_clock::now();
    if (now >= until) return true;
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(until - now, milliseconds(10)));
  }
}

}  // namespace da::convex
