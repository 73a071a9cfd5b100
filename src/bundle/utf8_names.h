// Internal to src/bundle: entry names are UTF-8 end to end. Archive formats store names as
// bytes (GNU tar, zip without the UTF-8 flag) or as UTF-8 (pax headers, zip with the flag),
// and every name ends up in JSON (problem details, reports) and on the CLI's command line,
// both of which need valid UTF-8.
#pragma once

#include <locale.h>
#include <string>
#include <string_view>

namespace da::bundle::detail {

// Well-formed UTF-8 as Unicode defines it: no overlong forms, no surrogates, nothing above
// U+10FFFF. This is also what nlohmann::json accepts when it serialises a string.
bool isValidUtf8(std::string_view text);

// `text` with every byte that is not part of a well-formed UTF-8 sequence written as `\xFF`,
// so a bad name can still be shown in a message. Valid UTF-8 comes back unchanged.
std::string escapeInvalidUtf8(std::string_view text);

// libarchive converts UTF-8 names (pax `path` records, zip entries flagged UTF-8) to the
// current locale's character set and reports a failed conversion as a warning. In the C
// locale every non-ASCII name fails, so while this object lives the calling thread uses a
// UTF-8 LC_CTYPE (uselocale: per thread, so other threads and the process-wide locale are
// untouched). It must outlive every libarchive object created under it: libarchive reads
// the character set once per archive object.
class ScopedUtf8Locale {
 public:
  ScopedUtf8Locale();
  ~ScopedUtf8Locale();
  ScopedUtf8Locale(const ScopedUtf8Locale&) = delete;
  ScopedUtf8Locale& operator=(const ScopedUtf8Locale&) = delete;

 private:
  locale_t previous_ = nullptr;  // nullptr: no UTF-8 locale exists here, nothing was changed
};

}  // namespace da::bundle::detail
