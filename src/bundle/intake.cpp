// Format detection and archive extraction. The policy, in short: read the archive with a
// libarchive reader restricted to the one declared format, check every entry ourselves
// before anything touches the disk, write only plain files and directories with modes we
// choose, count real decompressed bytes, and publish the result with one rename.
//
// Entries are written by StagingDir rather than archive_write_disk: with links refused there
// is nothing archive_write_disk's SECURE_* flags would add, and its defaults are the wrong way
// round for us (bsdtar running as root restores owners and setuid bits, and leaves a partial
// tree behind after a refused entry). Never restored: owner, permissions beyond 0644/0755,
// ACLs, xattrs, file flags, times.
#include "bundle/intake.h"

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <new>
#include <vector>

#include "bundle/entry_path.h"
#include "bundle/extraction_guards.h"
#include "bundle/refusal.h"
#include "bundle/staging_dir.h"
#include "bundle/utf8_names.h"
#include "bundle/zip_directory.h"

namespace da::bundle {
namespace fs = std::filesystem;
using detail::refuse;

namespace {

// ---- format detection -------------------------------------------------------------------

// "Application/Zip; charset=binary" -> "application/zip"
std::string mediaType(std::string_view content_type) {
  std::string_view type = content_type.substr(0, content_type.find(';'));
  while (!type.empty() && std::isspace(static_cast<unsigned char>(type.front()))) type.remove_prefix(1);
  while (!type.empty() && std::isspace(static_cast<unsigned char>(type.back()))) type.remove_suffix(1);
  std::string lowered(type);
  std::transform(lowered.begin(), lowered.end(), lowered.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return lowered;
}

Format formatFromMediaType(const std::string& type) {
  if (type == "application/gzip" || type == "application/x-gzip" ||
      type == "application/tar+gzip") {
    return Format::kTarGz;
  }
  if (type == "application/x-tar") return Format::kTar;
  if (type == "application/zip" || type == "application/x-zip-compressed") return Format::kZip;
  return Format::kUnknown;
}

constexpr std::string_view kGzipMagic = "\x1f\x8b";
constexpr std::string_view kZipLocalHeaderMagic = "PK\x03\x04";
constexpr std::string_view kZipEmptyArchiveMagic = "PK\x05\x06";  // end-of-central-directory only
constexpr std::string_view kUstarMagic = "ustar";
constexpr size_t kUstarMagicOffset = 257;

bool isGzip(std::string_view bytes) { return bytes.substr(0, 2) == kGzipMagic; }

bool isZip(std::string_view bytes) {
  return bytes.substr(0, 4) == kZipLocalHeaderMagic || bytes.substr(0, 4) == kZipEmptyArchiveMagic;
}

bool isUstar(std::string_view bytes) {
  return bytes.size() >= kUstarMagicOffset + kUstarMagic.size() &&
         bytes.substr(kUstarMagicOffset, kUstarMagic.size()) == kUstarMagic;
}

Format formatFromMagic(std::string_view first_bytes) {
  if (isGzip(first_bytes)) return Format::kTarGz;  // gzip'd tar is the only gzip we accept
  if (isZip(first_bytes)) return Format::kZip;
  if (isUstar(first_bytes)) return Format::kTar;
  return Format::kUnknown;
}

// ---- the archive file and the destination ----------------------------------------------

// "out/" -> "out"; refuses paths that name no directory entry of their own.
fs::path normalizedDestination(const fs::path& dest) {
  fs::path target = dest.has_filename() ? dest : dest.parent_path();
  const fs::path name = target.filename();
  if (target.empty() || name == "." || name == "..") {
    refuse("invalid_destination", "destination must name a new directory: '" + dest.string() + "'");
  }
  return target;
}

void requireDestinationFree(const fs::path& dest) {
  struct stat existing;
  if (::lstat(dest.c_str(), &existing) == 0) {
    refuse("destination_exists", "destination already exists: " + dest.string());
  }
  if (errno != ENOENT) {
    refuse("io_error", "cannot check destination " + dest.string() + ": " + std::strerror(errno));
  }
}

uint64_t archiveSizeWithinLimits(const fs::path& archive_path, const IntakeLimits& limits) {
  std::error_code error;
  const uint64_t size = fs::file_size(archive_path, error);
  if (error) refuse("io_error", "cannot read archive " + archive_path.string() + ": " + error.message());
  if (size == 0) refuse("empty_archive", "archive file is empty");
  if (size > limits.max_archive_bytes) {
    refuse("too_large",
           "archive is " + std::to_string(size) + " bytes, limit is " +
               std::to_string(limits.max_archive_bytes),
           {}, "max_archive_bytes");
  }
  return size;
}

std::string readFirstBytes(const fs::path& archive_path, size_t count) {
  std::ifstream in(archive_path, std::ios::binary);
  std::string bytes(count, '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(count));
  bytes.resize(static_cast<size_t>(in.gcount()));
  return bytes;
}

// libarchive would happily fall back to reading an uncompressed tar as "tar.gz"; checking
// the magic ourselves keeps the reader honest about the one format it was told to expect.
void requireMagicOfFormat(const fs::path& archive_path, Format format) {
  const std::string head = readFirstBytes(archive_path, 4);
  if (format == Format::kTarGz && !isGzip(head)) {
    refuse("format_mismatch", "declared tar.gz, but the data is not gzip");
  }
  if (format == Format::kZip && !isZip(head)) {
    refuse("format_mismatch", "declared zip, but the data does not start with a zip header");
  }
  // A zip that starts with its end-of-central-directory record has no room for entries;
  // libarchive's seekable reader does not even recognise it, so say what it is here.
  if (format == Format::kZip && head == kZipEmptyArchiveMagic) {
    refuse("empty_archive", "zip archive has no entries");
  }
}

// ---- reading with libarchive ------------------------------------------------------------

using ArchiveReader = std::unique_ptr<archive, int (*)(archive*)>;

constexpr size_t kReadBlockBytes = 64 * 1024;

std::string libarchiveError(archive* reader) {
  const char* message = archive_error_string(reader);
  return message != nullptr ? message : "unknown libarchive error";
}

// Enables exactly one format (and gzip only for tar.gz): every extra format a reader can
// parse is extra attack surface, and a tar must never be read as, say, a cpio or an ISO.
void enableFormat(archive* reader, Format format) {
  switch (format) {
    case Format::kTarGz:
      archive_read_support_filter_gzip(reader);
      archive_read_support_format_tar(reader);
      return;
    case Format::kTar:
      archive_read_support_format_tar(reader);
      return;
    case Format::kZip:
      // The seekable zip reader works from the central directory, the index every other
      // zip tool uses. The streaming reader walks local headers instead and trusts them,
      // so an archive whose local headers disagree with its central directory (hidden,
      // extra or differently named entries) would unpack to something other than what a
      // reviewer listing it sees. The upload is a file on disk, so seeking costs nothing.
      archive_read_support_format_zip_seekable(reader);
      return;
    case Format::kUnknown:
      break;
  }
  refuse("unsupported_format", "archive format is not one of tar.gz, tar, zip");
}

// What libarchive sets as errno when no enabled format recognises the data. archive.h
// leaves ARCHIVE_ERRNO_FILE_FORMAT undefined for users; on Linux it is EILSEQ.
constexpr int kUnrecognizedFormatErrno = EILSEQ;

ArchiveReader openReader(const fs::path& archive_path, Format format) {
  ArchiveReader reader(archive_read_new(), archive_read_free);
  if (!reader) throw std::bad_alloc();
  enableFormat(reader.get(), format);
  if (archive_read_open_filename(reader.get(), archive_path.c_str(), kReadBlockBytes) ==
      ARCHIVE_OK) {
    return reader;
  }
  // For zip the magic was already checked, so a zip that fails to open lacks a readable
  // central directory (typically truncated): corrupt. A (decompressed) stream that no tar
  // header matches is a different format; other errors (truncated gzip...) are corruption.
  const std::string error = libarchiveError(reader.get());
  if (format != Format::kZip && archive_errno(reader.get()) == kUnrecognizedFormatErrno) {
    refuse("format_mismatch",
           std::string(format == Format::kTarGz ? "gzip data does not contain a tar archive"
                                                : "data is not a tar archive") +
               ": " + error);
  }
  refuse("corrupt_archive", std::string("cannot read ") + formatName(format) + " archive: " + error);
}

std::string entryName(archive_entry* entry) {
  const char* name = archive_entry_pathname(entry);
  if (name == nullptr) name = archive_entry_pathname_utf8(entry);
  return name != nullptr ? name : "";  // an unreadable name is refused as empty
}

// False at the end of the archive. Warnings count as corruption: the zip reader reports a
// local header that contradicts the central directory (size, CRC) only as a warning, and
// then goes on with the local header's values.
bool readNextHeader(archive* reader, archive_entry** entry) {
  const int status = archive_read_next_header(reader, entry);
  if (status == ARCHIVE_EOF) return false;
  if (status == ARCHIVE_OK) return true;
  if (status != ARCHIVE_WARN) {
    refuse("corrupt_archive", "cannot read next entry: " + libarchiveError(reader));
  }
  // A name stored as UTF-8 (pax `path`, zip UTF-8 flag) that is not valid UTF-8 fails
  // libarchive's conversion with a warning; the pax reader then keeps the raw bytes, the zip
  // reader no name at all. Under the UTF-8 locale extraction runs in, that is the only way
  // to end up with no name or a name that is not UTF-8.
  const char* name = archive_entry_pathname(*entry);
  if (name == nullptr || !detail::isValidUtf8(name)) {
    const std::string escaped = name != nullptr ? detail::escapeInvalidUtf8(name) : "";
    refuse("invalid_path", "entry name is not valid UTF-8 (" + libarchiveError(reader) + ")", escaped);
  }
  refuse("corrupt_archive", "cannot read next entry: " + libarchiveError(reader), name);
}

// Bytes of a tar's end-of-archive marker: two zero blocks.
constexpr int64_t kTarEndMarkerBytes = 2 * 512;

// libarchive's tar reader reports the end of the archive both after the zero blocks and when
// the data simply stops on a block boundary ("some writers omit the block of nulls"). A
// plain tar cut off between two entries would then unpack as a complete, smaller app, so
// the marker is required: libarchive consumes the zero blocks it finds when it reaches the
// end, and `entries_end` is where the last entry's data (padding included) ended. Compressed
// tars need no such check; gzip's length and CRC trailer catches the cut first.
void requireTarEndMarker(archive* reader, int64_t entries_end) {
  const int64_t marker_bytes = archive_filter_bytes(reader, 0) - entries_end;
  if (marker_bytes < kTarEndMarkerBytes) {
    refuse("corrupt_archive",
           "tar archive is truncated: no end-of-archive marker (two zero blocks) after the "
           "last entry");
  }
}

enum class EntryKind { kFile, kDirectory };

const char* specialFileDescription(mode_t type) {
  switch (type) {
    case AE_IFCHR: return "a character device";
    case AE_IFBLK: return "a block device";
    case AE_IFIFO: return "a fifo";
    case AE_IFSOCK: return "a socket";
    default: return "of an unsupported type";
  }
}

// An app bundle is plain files and directories. Links are refused outright: libarchive
// never validates symlink targets, a link to /etc/... or /proc/self/environ would expose
// host files to every tool that later reads the tree, and hardlinks alias files in ways a
// path check cannot see. Devices, fifos and sockets have no place in source code.
EntryKind classifyEntry(archive_entry* entry, const std::string& name) {
  if (archive_entry_is_encrypted(entry)) {
    refuse("encrypted_entry", "entry is encrypted", name);
  }
  if (const char* target = archive_entry_hardlink(entry)) {
    refuse("link_entry", std::string("entry is a hardlink to '") + target + "'", name);
  }
  const mode_t type = archive_entry_filetype(entry);
  if (type == AE_IFREG) return EntryKind::kFile;
  if (type == AE_IFDIR) return EntryKind::kDirectory;
  if (type == AE_IFLNK) {
    const char* target = archive_entry_symlink(entry);
    refuse("link_entry", std::string("entry is a symlink to '") + (target ? target : "") + "'",
           name);
  }
  refuse("special_file", std::string("entry is ") + specialFileDescription(type), name);
}

// Only the exec bits carry meaning for source files; setuid/setgid/sticky and odd
// group/other bits from the archive are never reproduced.
mode_t fileModeFor(archive_entry* entry) {
  return (archive_entry_perm(entry) & 0111) != 0 ? 0755 : 0644;
}

void writeAll(int fd, const char* data, size_t size, const std::string& name) {
  while (size > 0) {
    const ssize_t written = ::write(fd, data, size);
    if (written < 0 && errno == EINTR) continue;
    if (written < 0) refuse("io_error", std::string("cannot write file: ") + std::strerror(errno), name);
    data += written;
    size -= static_cast<size_t>(written);
  }
}

void copyEntryData(archive* reader, int fd, const std::string& name, detail::UnpackBudget& budget) {
  std::vector<char> buffer(kReadBlockBytes);
  while (true) {
    const la_ssize_t count = archive_read_data(reader, buffer.data(), buffer.size());
    if (count == 0) return;
    if (count < 0) refuse("corrupt_archive", "cannot read entry data: " + libarchiveError(reader), name);
    budget.consume(static_cast<uint64_t>(count), name);  // before writing: never exceed a limit on disk
    writeAll(fd, buffer.data(), static_cast<size_t>(count), name);
  }
}

void extractFile(archive* reader, archive_entry* entry, const std::string& path,
                 const std::string& name, detail::StagingDir& staging,
                 detail::UnpackBudget& budget) {
  if (archive_entry_size_is_set(entry) && archive_entry_size(entry) > 0) {
    budget.expect(static_cast<uint64_t>(archive_entry_size(entry)), name);
  }
  detail::UniqueFd file = staging.createFile(path, fileModeFor(entry));
  copyEntryData(reader, file.get(), name, budget);
}

Extracted extract(const fs::path& archive_path, Format format, const fs::path& requested_dest,
                  const IntakeLimits& limits) {
  // First, so that it outlives the reader: libarchive picks the locale's charset per reader.
  const detail::ScopedUtf8Locale utf8_names;
  const fs::path dest = normalizedDestination(requested_dest);
  requireDestinationFree(dest);
  if (format == Format::kUnknown) {
    refuse("unsupported_format", "archive format is not one of tar.gz, tar, zip");
  }
  const uint64_t archive_bytes = archiveSizeWithinLimits(archive_path, limits);
  requireMagicOfFormat(archive_path, format);
  if (format == Format::kZip) {
    detail::checkZipCentralDirectory(archive_path, archive_bytes, limits.max_entries);
  }
  ArchiveReader reader = openReader(archive_path, format);

  detail::StagingDir staging(dest);  // removed again unless commitTo() runs
  detail::EntryRegistry registry(limits.max_entries);
  detail::UnpackBudget budget(limits, archive_bytes);
  Extracted result{dest, 0, 0};
  uint64_t files = 0;

  archive_entry* entry = nullptr;
  while (true) {
    // Every entry before this point has been read to its end (directories are skipped
    // explicitly below), so this is where the entries stop if no header follows.
    const int64_t entries_end = archive_filter_bytes(reader.get(), 0);
    if (!readNextHeader(reader.get(), &entry)) {
      if (format == Format::kTar) requireTarEndMarker(reader.get(), entries_end);
      break;
    }
    const std::string name = entryName(entry);
    // The path rules come first: they refuse names that are not UTF-8, which no other
    // refusal may carry.
    const std::string path = detail::normalizeEntryPath(name, limits);
    if (++result.entries > limits.max_entries) {
      refuse("too_many_entries",
             "archive has more than " + std::to_string(limits.max_entries) + " entries", name,
             "max_entries");
    }
    const EntryKind kind = classifyEntry(entry, name);
    if (kind == EntryKind::kDirectory) {
      // A tar directory header may still claim a size; skip it now so entries_end is exact.
      if (archive_read_data_skip(reader.get()) != ARCHIVE_OK) {
        refuse("corrupt_archive", "cannot skip entry data: " + libarchiveError(reader.get()), name);
      }
      if (path.empty()) continue;  // "./": the root, which the staging directory already is
      registry.claimDirectory(path, name);
      staging.makeDirectory(path);
      continue;
    }
    if (path.empty()) refuse("invalid_path", "a file entry names the archive root", name);
    registry.claimFile(path, name);
    extractFile(reader.get(), entry, path, name, staging, budget);
    ++files;
  }
  if (files == 0) refuse("empty_archive", "archive contains no files");

  staging.commitTo(dest);
  result.unpacked_bytes = budget.unpacked();
  return result;
}

}  // namespace

const char* formatName(Format f) {
  switch (f) {
    case Format::kTarGz: return "tar.gz";
    case Format::kTar: return "tar";
    case Format::kZip: return "zip";
    case Format::kUnknown: break;
  }
  return "unknown";
}

Format detectFormat(std::string_view content_type, std::string_view first_bytes) {
  const Format declared = formatFromMediaType(mediaType(content_type));
  return declared != Format::kUnknown ? declared : formatFromMagic(first_bytes);
}

IntakeResult extractArchive(const fs::path& archive, Format format, const fs::path& dest,
                            const IntakeLimits& limits) {
  IntakeResult result;
  try {
    result.extracted = extract(archive, format, dest, limits);
  } catch (const detail::Refusal& refusal) {
    result.error = refusal.error();
  } catch (const std::exception& e) {
    result.error = IntakeError{"internal_error", e.what(), {}, {}};
  } catch (...) {
    result.error = IntakeError{"internal_error", "unknown exception during extraction", {}, {}};
  }
  if (result.error) {
    // The error ends up in JSON. Names are checked before they reach a refusal, but a
    // libarchive message or a destination path may still carry arbitrary bytes.
    result.error->message = detail::escapeInvalidUtf8(result.error->message);
    result.error->entry = detail::escapeInvalidUtf8(result.error->entry);
  }
  return result;
}

}  // namespace da::bundle
