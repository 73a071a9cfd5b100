// Streaming brotli decoding of `Content-Encoding: br` request bodies (the CLI compresses
// evaluate_schema, evaluate_push, start_push and finish_push bodies).
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

namespace standin {

// The decoded body would exceed the caller's limit.
class DecodedBodyTooLarge : public std::length_error {
 public:
  using std::length_error::length_error;
};

// The input is not a complete, valid brotli stream.
class InvalidBrotliStream : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Decodes `compressed`, stopping as soon as the output would pass `max_decoded_bytes`, so a
// small "brotli bomb" cannot make the stand-in allocate gigabytes.
std::string decodeBrotli(std::string_view compressed, std::size_t max_decoded_bytes);

}  // namespace standin
