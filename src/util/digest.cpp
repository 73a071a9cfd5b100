#include "util/digest.h"

#include <sys/random.h>

#include <cerrno>
#include <fstream>
#include <memory>
#include <stdexcept>

#include <openssl/evp.h>
#include <openssl/hmac.h>

namespace da {

namespace {

std::string toHex(const unsigned char* bytes, size_t size) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(size * 2);
  for (size_t i = 0; i < size; ++i) {
    hex.push_back(kHex[bytes[i] >> 4]);
    hex.push_back(kHex[bytes[i] & 0xF]);
  }
  return hex;
}

using DigestContext = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;

DigestContext newSha256() {
  DigestContext context(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (!context || EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("OpenSSL cannot start a SHA-256 digest");
  }
  return context;
}

std::string finish(EVP_MD_CTX* context) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (EVP_DigestFinal_ex(context, digest, &size) != 1) throw std::runtime_error("OpenSSL cannot finish a SHA-256 digest");
  return toHex(digest, size);
}

}  // namespace

std::string sha256Hex(std::string_view data) {
  auto context = newSha256();
  EVP_DigestUpdate(context.get(), data.data(), data.size());
  return finish(context.get());
}

std::optional<std::string> sha256FileHex(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  auto context = newSha256();
  char block[64 * 1024];
  while (in) {
    in.read(block, sizeof block);
    if (in.gcount() > 0) EVP_DigestUpdate(context.get(), block, static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) return std::nullopt;
  return finish(context.get());
}

std::string hmacSha256Hex(std::string_view key, std::string_view data) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
            data.size(), mac, &size)) {
    throw std::runtime_error("OpenSSL cannot compute an HMAC-SHA256");
  }
  return toHex(mac, size);
}

std::string randomBytes(size_t count) {
  std::string bytes(count, '\0');
  size_t filled = 0;
  while (filled < count) {
    const ssize_t got = ::getrandom(bytes.data() + filled, count - filled, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("getrandom failed");
    }
    filled += static_cast<size_t>(got);
  }
  return bytes;
}

}  // namespace da
