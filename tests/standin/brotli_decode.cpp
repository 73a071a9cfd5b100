#include "standin/brotli_decode.h"

#include <array>
#include <cstdint>
#include <memory>

#include <brotli/decode.h>

namespace standin {

std::string decodeBrotli(std::string_view compressed, std::size_t max_decoded_bytes) {
  std::unique_ptr<BrotliDecoderState, decltype(&BrotliDecoderDestroyInstance)> decoder(
      BrotliDecoderCreateInstance(nullptr, nullptr, nullptr), &BrotliDecoderDestroyInstance);
  if (!decoder) throw std::bad_alloc();

  std::size_t available_in = compressed.size();
  const auto* next_in = reinterpret_cast<const std::uint8_t*>(compressed.data());
  std::array<std::uint8_t, 64 * 1024> chunk;
  std::string decoded;

  for (;;) {
    std::size_t available_out = chunk.size();
    std::uint8_t* next_out = chunk.data();
    const BrotliDecoderResult result = BrotliDecoderDecompressStream(
        decoder.get(), &available_in, &next_in, &available_out, &next_out, nullptr);

    const std::size_t produced = chunk.size() - available_out;
    if (decoded.size() + produced > max_decoded_bytes) {
      throw DecodedBodyTooLarge("decoded body exceeds " + std::to_string(max_decoded_bytes) +
                                " bytes");
    }
    decoded.append(reinterpret_cast<const char*>(chunk.data()), produced);

    switch (result) {
      case BROTLI_DECODER_RESULT_SUCCESS:
        if (available_in != 0) throw InvalidBrotliStream("trailing bytes after the brotli stream");
        return decoded;
      case BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT:
        continue;
      case BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT:
        throw InvalidBrotliStream("truncated brotli stream");
      case BROTLI_DECODER_RESULT_ERROR:
      default:
        throw InvalidBrotliStream(
            std::string("invalid brotli stream: ") +
            BrotliDecoderErrorString(BrotliDecoderGetErrorCode(decoder.get())));
    }
  }
}

}  // namespace standin
