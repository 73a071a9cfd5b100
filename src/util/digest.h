// SHA-256 and HMAC-SHA256 through OpenSSL, as lower-case hex.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace da {

std::string sha256Hex(std::string_view data);
// Reads the file in blocks; nullopt when it cannot be read.
std::optional<std::string> sha256FileHex(const std::filesystem::path& path);
std::string hmacSha256Hex(std::string_view key, std::string_view data);
// `count` bytes from the kernel's random source (getrandom), for keys and salts.
std::string randomBytes(size_t count);

}  // namespace da
