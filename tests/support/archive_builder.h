// Builds tar, tar.gz and zip archives at test time with libarchive's write API, including
// hostile ones: names are stored exactly as given (absolute, `..`, backslashes, control
// characters) and entries may be links, devices, fifos or sockets. Errors throw
// std::runtime_error, which fails the calling test. Non-ASCII names are written the way
// current tools write them: as a UTF-8 pax `path` record (pax dialect; bytes that are not
// valid UTF-8 go into a `hdrcharset=BINARY` record instead) or a zip name flagged UTF-8.
// The ustar dialect stores every name as raw bytes, like GNU tar.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "bundle/intake.h"

namespace testsupport {

enum class EntryType {
  kFile, kDirectory, kSymlink, kHardlink, kCharDevice, kBlockDevice, kFifo, kSocket
};

struct RawEntry {
  std::string path;                      // stored verbatim (archive_entry_set_pathname)
  EntryType type = EntryType::kFile;
  unsigned mode = 0644;                  // permission bits, setuid/setgid/sticky included
  std::string content;                   // regular files only
  std::string link_target;               // symlinks and hardlinks
  std::optional<int64_t> declared_size;  // header size if it should differ from content.size()
};

// pax (restricted: plain ustar headers unless a name or size needs an extension) or strict
// ustar, which some old tools produce.
enum class TarDialect { kPax, kUstar };

class ArchiveBuilder {
 public:
  using Format = da::bundle::Format;

  ArchiveBuilder& addFile(std::string path, std::string content, unsigned mode = 0644);
  // Changes the content of the entry at `path` (adds it if there is none), keeping one entry.
  ArchiveBuilder& replaceFile(const std::string& path, std::string content);
  ArchiveBuilder& removeEntry(const std::string& path);
  ArchiveBuilder& addDir(std::string path, unsigned mode = 0755);
  ArchiveBuilder& addSymlink(std::string path, std::string target);
  ArchiveBuilder& addHardlink(std::string path, std::string target);
  ArchiveBuilder& addRaw(RawEntry entry);

  // Zip only: encrypts every file with traditional PKWARE (ZipCrypto) encryption.
  ArchiveBuilder& encryptWith(std::string passphrase);
  ArchiveBuilder& tarDialect(TarDialect dialect);

  std::string build(Format format) const;  // the archive's bytes
  void writeTo(const std::filesystem::path& path, Format format) const;

  // Every file, directory and symlink below `dir`, in sorted order, with paths relative to it.
  static ArchiveBuilder fromDirectory(const std::filesystem::path& dir, bool skip_node_modules = true);

  const std::vector<RawEntry>& entries() const { return entries_; }

 private:
  std::vector<RawEntry> entries_;
  std::string passphrase_;
  TarDialect dialect_ = TarDialect::kPax;
};

// `data` gzip-compressed as a bare stream (no tar inside), e.g. to pose as a .tar.gz.
std::string gzipBytes(const std::string& data);

// Rewrites every uncompressed-size field (local header, data descriptor, central directory)
// of a single-entry zip built by ArchiveBuilder to `claimed`: a zip whose headers lie
// consistently about how much its deflate stream holds.
std::string forgeZipUncompressedSize(std::string zip, uint32_t claimed);

// Rewrites the entry counts the end of central directory record of a zip built by
// ArchiveBuilder declares, leaving the central directory records themselves alone. With
// `zip64`, counts and directory location move into a zip64 end record plus locator inserted
// before the classic record (whose fields then say 0xFFFF / 0xFFFFFFFF, "see zip64"), the
// way writers lay out archives too big for the classic fields.
std::string forgeZipDeclaredEntries(std::string zip, uint64_t declared, bool zip64 = false);

// Writes `bytes` to `path` (replacing it), e.g. a deliberately truncated archive.
void writeBytes(const std::filesystem::path& path, const std::string& bytes);

}  // namespace testsupport
