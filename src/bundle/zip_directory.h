// Internal to src/bundle: a look at a zip's central directory before libarchive loads it.
// libarchive's seekable zip reader reads the whole central directory into memory on the
// first archive_read_next_header, one allocation per record, before max_entries gets a
// chance to apply: an 81 MB zip64 holding 1.5 million records cost 235 MB of RSS. It also
// ignores the entry count the end-of-central-directory record declares and simply reads
// records until the next signature is not a record's, so the declared count alone proves
// nothing; the records themselves are counted here, in a fixed amount of memory.
#pragma once

#include <cstdint>
#include <filesystem>

namespace da::bundle::detail {

// Refuses, by throwing Refusal:
//   corrupt_archive   no end-of-central-directory record where libarchive looks for one (the
//                     last 16 KiB), or one whose fields libarchive would reject: it could
//                     not open the archive either
//   too_many_entries  (limit max_entries) the record (or its zip64 counterpart) declares more
//                     than max_entries entries, or more than max_entries central directory
//                     records follow any place libarchive may start reading them from
// Reads `archive` with pread; `archive_bytes` is its size.
void checkZipCentralDirectory(const std::filesystem::path& archive, uint64_t archive_bytes,
                              uint64_t max_entries);

}  // namespace da::bundle::detail
