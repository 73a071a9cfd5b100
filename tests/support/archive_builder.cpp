#include "support/archive_builder.h"

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string_view>

#include "bundle/utf8_names.h"

namespace testsupport {
namespace fs = std::filesystem;

namespace {

using ArchiveWriter = std::unique_ptr<archive, int (*)(archive*)>;
using EntryPtr = std::unique_ptr<archive_entry, void (*)(archive_entry*)>;

// Fixed metadata keeps archives byte-for-byte reproducible; the foreign owner shows that
// extraction does not restore owners.
constexpr time_t kFixedMtime = 1700000000;
constexpr int64_t kForeignUid = 502;

void check(archive* writer, int status, const std::string& what) {
  if (status < ARCHIVE_WARN) {
    const char* message = archive_error_string(writer);
    throw std::runtime_error("ArchiveBuilder: " + what + ": " + (message ? message : "unknown error"));
  }
}

la_ssize_t appendToString(archive*, void* client, const void* buffer, size_t length) {
  static_cast<std::string*>(client)->append(static_cast<const char*>(buffer), length);
  return static_cast<la_ssize_t>(length);
}

mode_t fileTypeBits(EntryType type) {
  switch (type) {
    case EntryType::kFile: return AE_IFREG;
    case EntryType::kDirectory: return AE_IFDIR;
    case EntryType::kSymlink: return AE_IFLNK;
    case EntryType::kHardlink: return AE_IFREG;  // a hardlink is a regular file plus a link name
    case EntryType::kCharDevice: return AE_IFCHR;
    case EntryType::kBlockDevice: return AE_IFBLK;
    case EntryType::kFifo: return AE_IFIFO;
    case EntryType::kSocket: return AE_IFSOCK;
  }
  return AE_IFREG;
}

ArchiveWriter newWriter(ArchiveBuilder::Format format, TarDialect dialect,
                        const std::string& passphrase) {
  ArchiveWriter writer(archive_write_new(), archive_write_free);
  archive* a = writer.get();
  switch (format) {
    case ArchiveBuilder::Format::kTarGz:
      check(a, archive_write_add_filter_gzip(a), "gzip filter");
      [[fallthrough]];
    case ArchiveBuilder::Format::kTar:
      check(a, dialect == TarDialect::kUstar ? archive_write_set_format_ustar(a)
                                             : archive_write_set_format_pax_restricted(a),
            "tar format");
      break;
    case ArchiveBuilder::Format::kZip:
      check(a, archive_write_set_format_zip(a), "zip format");
      if (!passphrase.empty()) {
        check(a, archive_write_set_options(a, "zip:encryption=zipcrypt"), "zip encryption");
        check(a, archive_write_set_passphrase(a, passphrase.c_str()), "passphrase");
      }
      break;
    case ArchiveBuilder::Format::kUnknown:
      throw std::invalid_argument("ArchiveBuilder: cannot build Format::kUnknown");
  }
  // No padding after the data: archive sizes stay exact for ratio and truncation tests.
  check(a, archive_write_set_bytes_in_last_block(a, 1), "block size");
  return writer;
}

EntryPtr makeEntry(const RawEntry& raw) {
  EntryPtr entry(archive_entry_new(), archive_entry_free);
  archive_entry* e = entry.get();
  archive_entry_set_pathname(e, raw.path.c_str());
  archive_entry_set_filetype(e, fileTypeBits(raw.type));
  archive_entry_set_perm(e, raw.mode);
  archive_entry_set_uid(e, kForeignUid);
  archive_entry_set_gid(e, kForeignUid);
  archive_entry_set_mtime(e, kFixedMtime, 0);
  const int64_t content_size = static_cast<int64_t>(raw.content.size());
  archive_entry_set_size(e, raw.type == EntryType::kFile ? raw.declared_size.value_or(content_size) : 0);
  if (raw.type == EntryType::kSymlink) archive_entry_set_symlink(e, raw.link_target.c_str());
  if (raw.type == EntryType::kHardlink) archive_entry_set_hardlink(e, raw.link_target.c_str());
  if (raw.type == EntryType::kCharDevice || raw.type == EntryType::kBlockDevice) {
    archive_entry_set_rdevmajor(e, 1);
    archive_entry_set_rdevminor(e, 3);
  }
  return entry;
}

std::string readFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

ArchiveBuilder& ArchiveBuilder::addFile(std::string path, std::string content, unsigned mode) {
  return addRaw(RawEntry{std::move(path), EntryType::kFile, mode, std::move(content), {}, {}});
}

ArchiveBuilder& ArchiveBuilder::replaceFile(const std::string& path, std::string content) {
  for (auto& entry : entries_) {
    if (entry.path == path && entry.type == EntryType::kFile) {
      entry.content = std::move(content);
      return *this;
    }
  }
  return addFile(path, std::move(content));
}

ArchiveBuilder& ArchiveBuilder::removeEntry(const std::string& path) {
  std::erase_if(entries_, [&](const RawEntry& entry) { return entry.path == path; });
  return *this;
}

ArchiveBuilder& ArchiveBuilder::addDir(std::string path, unsigned mode) {
  return addRaw(RawEntry{std::move(path), EntryType::kDirectory, mode, {}, {}, {}});
}

ArchiveBuilder& ArchiveBuilder::addSymlink(std::string path, std::string target) {
  return addRaw(RawEntry{std::move(path), EntryType::kSymlink, 0777, {}, std::move(target), {}});
}

ArchiveBuilder& ArchiveBuilder::addHardlink(std::string path, std::string target) {
  return addRaw(RawEntry{std::move(path), EntryType::kHardlink, 0644, {}, std::move(target), {}});
}

ArchiveBuilder& ArchiveBuilder::addRaw(RawEntry entry) {
  entries_.push_back(std::move(entry));
  return *this;
}

ArchiveBuilder& ArchiveBuilder::encryptWith(std::string passphrase) {
  passphrase_ = std::move(passphrase);
  return *this;
}

ArchiveBuilder& ArchiveBuilder::tarDialect(TarDialect dialect) {
  dialect_ = dialect;
  return *this;
}

std::string ArchiveBuilder::build(Format format) const {
  // libarchive converts names from the locale's charset to UTF-8 for pax records and flagged
  // zip names; in the C locale every non-ASCII name would fail and fall back to raw bytes.
  const da::bundle::detail::ScopedUtf8Locale utf8_names;
  std::string bytes;
  ArchiveWriter writer = newWriter(format, dialect_, passphrase_);
  archive* a = writer.get();
  check(a, archive_write_open(a, &bytes, nullptr, appendToString, nullptr), "open");
  for (const RawEntry& raw : entries_) {
    EntryPtr entry = makeEntry(raw);
    check(a, archive_write_header(a, entry.get()), "header for '" + raw.path + "'");
    if (raw.type == EntryType::kFile && !raw.content.empty()) {
      const la_ssize_t written = archive_write_data(a, raw.content.data(), raw.content.size());
      check(a, written < 0 ? static_cast<int>(written) : ARCHIVE_OK, "data for '" + raw.path + "'");
    }
    check(a, archive_write_finish_entry(a), "finishing '" + raw.path + "'");
  }
  check(a, archive_write_close(a), "close");
  return bytes;
}

void ArchiveBuilder::writeTo(const fs::path& path, Format format) const {
  writeBytes(path, build(format));
}

ArchiveBuilder ArchiveBuilder::fromDirectory(const fs::path& dir, bool skip_node_modules) {
  std::vector<fs::path> paths;
  for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator(); ++it) {
    if (skip_node_modules && it->path().filename() == "node_modules") {
      it.disable_recursion_pending();
      continue;
    }
    paths.push_back(it->path());
  }
  std::sort(paths.begin(), paths.end());  // parents sort before their children

  ArchiveBuilder builder;
  for (const fs::path& path : paths) {
    const std::string relative = path.lexically_relative(dir).generic_string();
    const fs::file_status status = fs::symlink_status(path);
    const unsigned mode = static_cast<unsigned>(status.permissions() & fs::perms::mask);
    if (fs::is_symlink(status)) {
      builder.addSymlink(relative, fs::read_symlink(path).string());
    } else if (fs::is_directory(status)) {
      builder.addDir(relative, mode);
    } else if (fs::is_regular_file(status)) {
      builder.addFile(relative, readFile(path), mode);
    }
  }
  return builder;
}

std::string gzipBytes(const std::string& data) {
  std::string bytes;
  ArchiveWriter writer(archive_write_new(), archive_write_free);
  archive* a = writer.get();
  check(a, archive_write_add_filter_gzip(a), "gzip filter");
  check(a, archive_write_set_format_raw(a), "raw format");
  check(a, archive_write_set_bytes_in_last_block(a, 1), "block size");
  check(a, archive_write_open(a, &bytes, nullptr, appendToString, nullptr), "open");
  EntryPtr entry(archive_entry_new(), archive_entry_free);
  archive_entry_set_filetype(entry.get(), AE_IFREG);
  check(a, archive_write_header(a, entry.get()), "raw header");
  if (!data.empty() && archive_write_data(a, data.data(), data.size()) < 0) {
    check(a, ARCHIVE_FATAL, "raw data");
  }
  check(a, archive_write_close(a), "close");
  return bytes;
}

std::string forgeZipUncompressedSize(std::string zip, uint32_t claimed) {
  auto put32 = [&zip](size_t offset, uint32_t value) {
    if (offset + 4 > zip.size()) throw std::runtime_error("forgeZipUncompressedSize: not a zip");
    for (int i = 0; i < 4; ++i) zip[offset + i] = static_cast<char>((value >> (8 * i)) & 0xff);
  };
  auto offsetOf = [&zip](std::string_view signature) {
    const size_t at = zip.find(signature);
    if (at == std::string::npos) throw std::runtime_error("forgeZipUncompressedSize: no header");
    return at;
  };
  constexpr size_t kLocalHeaderSizeOffset = 22;
  constexpr size_t kDescriptorSizeOffset = 12;
  constexpr size_t kCentralHeaderSizeOffset = 24;
  put32(offsetOf(std::string_view("PK\x03\x04", 4)) + kLocalHeaderSizeOffset, claimed);
  if (zip.find(std::string_view("PK\x07\x08", 4)) != std::string::npos) {
    put32(offsetOf(std::string_view("PK\x07\x08", 4)) + kDescriptorSizeOffset, claimed);
  }
  put32(offsetOf(std::string_view("PK\x01\x02", 4)) + kCentralHeaderSizeOffset, claimed);
  return zip;
}

std::string forgeZipDeclaredEntries(std::string zip, uint64_t declared, bool zip64) {
  auto put = [&zip](size_t offset, uint64_t value, int bytes) {
    for (int i = 0; i < bytes; ++i) zip[offset + i] = static_cast<char>((value >> (8 * i)) & 0xff);
  };
  auto get = [&zip](size_t offset, int bytes) {
    uint64_t value = 0;
    for (int i = bytes - 1; i >= 0; --i) value = (value << 8) | static_cast<unsigned char>(zip[offset + i]);
    return value;
  };
  const size_t end_record = zip.rfind(std::string_view("PK\x05\x06", 4));
  if (end_record == std::string::npos || end_record + 22 > zip.size()) {
    throw std::runtime_error("forgeZipDeclaredEntries: no end of central directory record");
  }
  constexpr size_t kEntriesOnDisk = 8, kEntriesTotal = 10, kDirectoryBytes = 12, kDirectoryOffset = 16;
  if (!zip64) {
    if (declared > 0xffff) throw std::invalid_argument("forgeZipDeclaredEntries: needs zip64 above 65535");
    put(end_record + kEntriesOnDisk, declared, 2);
    put(end_record + kEntriesTotal, declared, 2);
    return zip;
  }
  const uint64_t directory_bytes = get(end_record + kDirectoryBytes, 4);
  const uint64_t directory_offset = get(end_record + kDirectoryOffset, 4);
  zip.insert(end_record, std::string(56 + 20, '\0'));  // room for the zip64 end record and locator
  const size_t record = end_record;
  const size_t locator = record + 56;
  const size_t classic = locator + 20;
  zip.replace(record, 4, "PK\x06\x06");
  put(record + 4, 56 - 12, 8);             // size of the rest of the record
  put(record + 12, 45, 2);                 // version made by
  put(record + 14, 45, 2);                 // version needed: 4.5, zip64
  put(record + 24, declared, 8);           // entries on this disk
  put(record + 32, declared, 8);           // entries in total
  put(record + 40, directory_bytes, 8);
  put(record + 48, directory_offset, 8);
  zip.replace(locator, 4, "PK\x06\x07");
  put(locator + 8, record, 8);             // where the zip64 end record is
  put(locator + 16, 1, 4);                 // number of disks
  put(classic + kEntriesOnDisk, 0xffff, 2);
  put(classic + kEntriesTotal, 0xffff, 2);
  put(classic + kDirectoryBytes, 0xffffffff, 4);
  put(classic + kDirectoryOffset, 0xffffffff, 4);
  return zip;
}

void writeBytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("writeBytes: cannot write " + path.string());
}

}  // namespace testsupport
