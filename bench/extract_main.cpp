// bench-extract ARCHIVE DEST: unpacks ARCHIVE into DEST (which must not exist) with the
// agent's own intake, exactly as an upload would be: format from the first bytes
// (da::bundle::detectFormat), default IntakeLimits, da::bundle::extractArchive.
// Exit 0 on success, 1 on a refusal (reason printed), 2 on bad usage or an unreadable file.
// Used by bench/extract.sh, which times it against `bsdtar -xf`.
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>

#include "bundle/intake.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: bench-extract ARCHIVE DEST\n";
    return 2;
  }
  const std::filesystem::path archive = argv[1];
  const std::filesystem::path dest = argv[2];

  std::ifstream in(archive, std::ios::binary);
  if (!in) {
    std::cerr << "bench-extract: cannot read " << archive << "\n";
    return 2;
  }
  std::string head(512, '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<size_t>(in.gcount()));
  in.close();

  const da::bundle::Format format = da::bundle::detectFormat("", head);
  const da::bundle::IntakeResult result =
      da::bundle::extractArchive(archive, format, dest, da::bundle::IntakeLimits{});
  if (!result.ok()) {
    const da::bundle::IntakeError& e = *result.error;
    std::cerr << "bench-extract: refused (" << da::bundle::formatName(format) << "): " << e.reason
              << ": " << e.message;
    if (!e.entry.empty()) std::cerr << " [entry " << e.entry << "]";
    if (!e.limit.empty()) std::cerr << " [limit " << e.limit << "]";
    std::cerr << "\n";
    return 1;
  }
  if (std::getenv("BENCH_EXTRACT_VERBOSE") != nullptr) {
    std::cerr << "bench-extract: " << da::bundle::formatName(format) << ", "
              << result.extracted->entries << " entries, " << result.extracted->unpacked_bytes
              << " bytes\n";
  }
  return 0;
}
