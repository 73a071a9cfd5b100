// The rules below follow libarchive's seekable zip reader (archive_read_support_format_zip.c:
// archive_read_format_zip_seekable_bid, read_eocd, read_zip64_eocd, slurp_central_directory)
// closely enough that wherever libarchive starts reading central directory records, this
// code has counted the same records first. Where versions of libarchive differ, this code
// checks every candidate rather than guess.
#include "bundle/zip_directory.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "bundle/refusal.h"
#include "bundle/staging_dir.h"

namespace da::bundle::detail {
namespace {

constexpr std::string_view kCentralRecordSignature{"PK\x01\x02", 4};
constexpr std::string_view kEndRecordSignature{"PK\x05\x06", 4};
constexpr std::string_view kZip64EndRecordSignature{"PK\x06\x06", 4};
constexpr std::string_view kZip64LocatorSignature{"PK\x06\x07", 4};

constexpr size_t kEndRecordBytes = 22;
constexpr size_t kZip64LocatorBytes = 20;
constexpr size_t kZip64EndRecordMinBytes = 56;
constexpr uint64_t kZip64EndRecordMaxBytes = 16384;  // libarchive's sanity bound
constexpr size_t kCentralRecordFixedBytes = 46;
// libarchive looks for the end record in this much of the file's tail and nowhere else.
constexpr uint64_t kEndRecordSearchBytes = 16 * 1024;

uint16_t le16(const unsigned char* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t le32(const unsigned char* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
uint64_t le64(const unsigned char* p) {
  return static_cast<uint64_t>(le32(p)) | (static_cast<uint64_t>(le32(p + 4)) << 32);
}
bool startsWith(const unsigned char* p, std::string_view signature) {
  return std::memcmp(p, signature.data(), signature.size()) == 0;
}

[[noreturn]] void refuseCorrupt(const std::string& why) {
  refuse("corrupt_archive", "cannot read zip archive: " + why);
}

[[noreturn]] void refuseTooManyEntries(const std::string& what, uint64_t max_entries) {
  refuse("too_many_entries",
         "zip central directory " + what + ", limit is " + std::to_string(max_entries) +
             " entries",
         {}, "max_entries");
}

// Positional reads through a buffer, so walking many small records costs few syscalls.
class FileReader {
 public:
  FileReader(const std::filesystem::path& path, uint64_t size)
      : fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)), size_(size) {
    if (fd_.get() < 0) {
      refuse("io_error", "cannot open archive " + path.string() + ": " + std::strerror(errno));
    }
  }

  uint64_t size() const { return size_; }

  // The `length` bytes at `offset`, or nullptr when the file ends before them. Valid until
  // the next call.
  const unsigned char* read(uint64_t offset, size_t length) {
    if (offset > size_ || length > size_ - offset) return nullptr;
    if (offset < buffer_offset_ || offset + length > buffer_offset_ + buffer_.size()) {
      fill(offset, std::max(length, kBufferBytes));
    }
    return buffer_.data() + (offset - buffer_offset_);
  }

 private:
  static constexpr size_t kBufferBytes = 64 * 1024;

  void fill(uint64_t offset, size_t wanted) {
    const size_t length = static_cast<size_t>(std::min<uint64_t>(wanted, size_ - offset));
    buffer_.resize(length);
    size_t done = 0;
    while (done < length) {
      const ssize_t got = ::pread(fd_.get(), buffer_.data() + done, length - done,
                                  static_cast<off_t>(offset + done));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) refuse("io_error", std::string("cannot read archive: ") + std::strerror(errno));
      if (got == 0) refuseCorrupt("the file shrank while it was being read");
      done += static_cast<size_t>(got);
    }
    buffer_offset_ = offset;
  }

  UniqueFd fd_;
  uint64_t size_;
  std::vector<unsigned char> buffer_;
  uint64_t buffer_offset_ = 0;
};

// Where the central directory is said to be, and how many entries it is said to hold.
struct DirectoryClaim {
  std::vector<uint64_t> starts;  // offsets libarchive may start looking for records from
  uint64_t declared_entries;
};

// libarchive's read_eocd: a single-volume archive whose directory ends before the record.
std::optional<DirectoryClaim> readEndRecord(const unsigned char* p, uint64_t record_offset) {
  const uint16_t disk = le16(p + 4);
  const uint16_t directory_disk = le16(p + 6);
  const uint16_t entries_on_disk = le16(p + 8);
  const uint16_t entries_total = le16(p + 10);
  const uint32_t directory_bytes = le32(p + 12);
  const uint32_t directory_offset = le32(p + 16);
  if (disk != 0 || directory_disk != 0 || entries_on_disk != entries_total) return std::nullopt;
  if (uint64_t{directory_offset} + directory_bytes > record_offset) return std::nullopt;
  // Older libarchive starts at the recorded offset; newer ones at the end record minus the
  // directory's size, which copes with data prepended to the archive. Either may be in use.
  return DirectoryClaim{{directory_offset, record_offset - directory_bytes}, entries_total};
}

// libarchive's read_zip64_eocd: the locator must point at a plausible zip64 end record of a
// single-volume archive. (libarchive does not check that record's signature, so neither
// does this: what matters is what libarchive would accept.)
std::optional<DirectoryClaim> readZip64EndRecord(FileReader& file, const unsigned char* locator) {
  if (le32(locator + 4) != 0 || le32(locator + 16) != 1) return std::nullopt;
  const uint64_t record_offset = le64(locator + 8);
  const unsigned char* p = file.read(record_offset, kZip64EndRecordMinBytes);
  if (p == nullptr) return std::nullopt;
  const uint64_t size_field = le64(p + 4);  // the record's size, less its first 12 bytes
  if (size_field < kZip64EndRecordMinBytes - 12 || size_field > kZip64EndRecordMaxBytes - 12) {
    return std::nullopt;
  }
  p = file.read(record_offset, static_cast<size_t>(size_field + 12));
  if (p == nullptr) return std::nullopt;
  if (le32(p + 16) != 0 || le32(p + 20) != 0) return std::nullopt;  // disk numbers
  const uint64_t entries_on_disk = le64(p + 24);
  const uint64_t entries_total = le64(p + 32);
  if (entries_on_disk != entries_total) return std::nullopt;
  return DirectoryClaim{{le64(p + 48)}, entries_total};
}

// libarchive (3.6.2, as installed, and current releases) takes the last end-record signature
// in the file's tail and fails when that record is not usable, never falling back to an
// earlier one. A usable zip64 locator right before it wins over the plain record's fields.
DirectoryClaim findDirectoryClaim(FileReader& file) {
  const uint64_t tail_bytes = std::min(kEndRecordSearchBytes, file.size());
  const uint64_t tail_offset = file.size() - tail_bytes;
  if (tail_bytes < kEndRecordBytes) refuseCorrupt("too short for an end of central directory record");
  // Copied: readZip64EndRecord reads elsewhere in the file through the same buffer.
  const unsigned char* mapped = file.read(tail_offset, static_cast<size_t>(tail_bytes));
  const std::vector<unsigned char> tail(mapped, mapped + tail_bytes);

  for (size_t i = tail.size() - kEndRecordBytes + 1; i-- > 0;) {
    if (!startsWith(tail.data() + i, kEndRecordSignature)) continue;
    std::optional<DirectoryClaim> claim = readEndRecord(tail.data() + i, tail_offset + i);
    if (i >= kZip64LocatorBytes && startsWith(tail.data() + i - kZip64LocatorBytes, kZip64LocatorSignature)) {
      if (auto zip64 = readZip64EndRecord(file, tail.data() + i - kZip64LocatorBytes)) {
        if (claim) zip64->starts.insert(zip64->starts.end(), claim->starts.begin(), claim->starts.end());
        claim = std::move(zip64);
      }
    }
    if (!claim) refuseCorrupt("the end of central directory record is inconsistent");
    return *claim;
  }
  refuseCorrupt("no end of central directory record (truncated?)");
}

// libarchive's slurp_central_directory: from `start`, skip ahead to the first record or
// end-record signature, then take records until an end-record signature. Anything else
// (another signature, the end of the file) makes libarchive fail, so counting stops there.
void countRecordsFrom(FileReader& file, uint64_t start, uint64_t max_entries) {
  std::optional<uint64_t> position;
  for (uint64_t offset = start; !position && offset + 4 <= file.size();) {
    const size_t window = static_cast<size_t>(std::min<uint64_t>(64 * 1024, file.size() - offset));
    const unsigned char* p = file.read(offset, window);
    // memchr for the 'P' keeps a scan through megabytes of file data cheap.
    for (const unsigned char* at = p; (at = static_cast<const unsigned char*>(
                                           std::memchr(at, 'P', p + window - 3 - at))) != nullptr;
         ++at) {
      if (startsWith(at, kCentralRecordSignature) || startsWith(at, kEndRecordSignature) ||
          startsWith(at, kZip64EndRecordSignature)) {
        position = offset + static_cast<uint64_t>(at - p);
        break;
      }
    }
    offset += window - 3;  // overlap: a signature may straddle two windows
  }
  if (!position) return;

  uint64_t records = 0;
  while (const unsigned char* p = file.read(*position, kCentralRecordFixedBytes)) {
    if (!startsWith(p, kCentralRecordSignature)) return;
    if (++records > max_entries) {
      refuseTooManyEntries("holds more than " + std::to_string(max_entries) + " records",
                           max_entries);
    }
    *position += kCentralRecordFixedBytes + le16(p + 28) + le16(p + 30) + le16(p + 32);
  }
}

}  // namespace

void checkZipCentralDirectory(const std::filesystem::path& archive, uint64_t archive_bytes,
                              uint64_t max_entries) {
  FileReader file(archive, archive_bytes);
  const DirectoryClaim claim = findDirectoryClaim(file);
  if (claim.declared_entries > max_entries) {
    refuseTooManyEntries("declares " + std::to_string(claim.declared_entries) + " entries",
                         max_entries);
  }
  for (uint64_t start : std::set<uint64_t>(claim.starts.begin(), claim.starts.end())) {
    countRecordsFrom(file, start, max_entries);
  }
}

}  // namespace da::bundle::detail
