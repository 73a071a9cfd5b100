#include "bundle/utf8_names.h"

#include <cstdio>

namespace da::bundle::detail {
namespace {

// Length of the well-formed UTF-8 sequence at the start of `text`, or 0 if there is none
// (Unicode 15, table 3-7: the second byte's range depends on the first byte, which is what
// excludes overlong forms, surrogates and code points above U+10FFFF).
size_t wellFormedSequenceLength(std::string_view text) {
  const auto byte = [&text](size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char first = byte(0);
  if (first < 0x80) return 1;
  size_t length = 0;
  unsigned char second_min = 0x80;
  unsigned char second_max = 0xBF;
  if (first >= 0xC2 && first <= 0xDF) {
    length = 2;
  } else if (first >= 0xE0 && first <= 0xEF) {
    length = 3;
    if (first == 0xE0) second_min = 0xA0;  // overlong below U+0800
    if (first == 0xED) second_max = 0x9F;  // UTF-16 surrogates
  } else if (first >= 0xF0 && first <= 0xF4) {
    length = 4;
    if (first == 0xF0) second_min = 0x90;  // overlong below U+10000
    if (first == 0xF4) second_max = 0x8F;  // above U+10FFFF
  } else {
    return 0;  // continuation byte, C0/C1 (overlong ASCII) or F5..FF
  }
  if (text.size() < length) return 0;
  if (byte(1) < second_min || byte(1) > second_max) return 0;
  for (size_t i = 2; i < length; ++i) {
    if (byte(i) < 0x80 || byte(i) > 0xBF) return 0;
  }
  return length;
}

// The first UTF-8 locale this system has. glibc >= 2.35 builds C.UTF-8 in; older systems
// usually ship one of the others. Created once and kept for the life of the process.
locale_t utf8Locale() {
  static const locale_t locale = [] {
    for (const char* name : {"C.UTF-8", "C.utf8", "en_US.UTF-8"}) {
      if (locale_t found = ::newlocale(LC_CTYPE_MASK, name, nullptr)) return found;
    }
    return static_cast<locale_t>(nullptr);
  }();
  return locale;
}

}  // namespace

bool isValidUtf8(std::string_view text) {
  while (!text.empty()) {
    const size_t length = wellFormedSequenceLength(text);
    if (length == 0) return false;
    text.remove_prefix(length);
  }
  return true;
}

std::string escapeInvalidUtf8(std::string_view text) {
  std::string escaped;
  escaped.reserve(text.size());
  while (!text.empty()) {
    const size_t length = wellFormedSequenceLength(text);
    if (length > 0) {
      escaped.append(text.substr(0, length));
      text.remove_prefix(length);
      continue;
    }
    char hex[5];
    std::snprintf(hex, sizeof hex, "\\x%02X", static_cast<unsigned char>(text.front()));
    escaped += hex;
    text.remove_prefix(1);
  }
  return escaped;
}

ScopedUtf8Locale::ScopedUtf8Locale() {
  // Without any UTF-8 locale, names that need one are refused as invalid_path rather than
  // extracted wrongly; ASCII names work either way.
  if (locale_t utf8 = utf8Locale()) previous_ = ::uselocale(utf8);
}

ScopedUtf8Locale::~ScopedUtf8Locale() {
  if (previous_ != nullptr) ::uselocale(previous_);
}

}  // namespace da::bundle::detail
