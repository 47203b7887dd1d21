#pragma once
/// \file codec/lz4.hpp
/// Lz4Compressor: LZ4 block compression, fast both ways. Opt-in: link cacheaside::lz4
/// (liblz4; Debian: liblz4-dev).
///
/// Format: the uncompressed size as 4 bytes little-endian, then one LZ4 block.

#include <cacheaside/codec/compressor.hpp>

#include <lz4.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace cacheaside {

/// LZ4 block format behind a 4-byte little-endian uncompressed-size prefix; id 1.
class Lz4Compressor final : public Compressor {
public:
  /// The id Lz4Compressor writes into records.
  static constexpr std::uint8_t kId = 1;
  /// The largest input LZ4's block format takes (LZ4_MAX_INPUT_SIZE, about 2 GB).
  static constexpr std::size_t kMaxInput = LZ4_MAX_INPUT_SIZE;

  /// Returns kId.
  std::uint8_t id() const noexcept override { return kId; }

  /// Appends the size prefix and the LZ4 block of in to out; throws std::length_error when in is
  /// larger than kMaxInput.
  void compress(std::string_view in, std::string& out) const override {
    if (in.size() > kMaxInput) {
      throw std::length_error("cacheaside: value too large for LZ4");
    }
    const int srcSize = static_cast<int>(in.size());
    const int bound = LZ4_compressBound(srcSize);
    const std::size_t start = out.size();
    out.resize(start + kPrefix + static_cast<std::size_t>(bound));
    for (std::size_t i = 0; i < kPrefix; ++i) {
      out[start + i] = static_cast<char>((in.size() >> (8 * i)) & 0xffu);
    }
    const int written = LZ4_compress_default(in.data(), &out[start + kPrefix], srcSize, bound);
    if (written <= 0) {
      out.resize(start);
      throw std::runtime_error("cacheaside: LZ4 compression failed");
    }
    out.resize(start + kPrefix + static_cast<std::size_t>(written));
  }

  /// Appends the decompressed bytes to out. Returns false, without allocating for it, when the
  /// prefix claims more than maxBytes (or kMaxInput); false when the block is corrupt, truncated
  /// or does not decompress to exactly the claimed size.
  bool decompress(std::string_view in, std::string& out, std::size_t maxBytes) const override {
    if (in.size() < kPrefix || in.size() - kPrefix > kMaxInput) {
      return false;
    }
    std::size_t size = 0;
    for (std::size_t i = 0; i < kPrefix; ++i) {
      size |= std::size_t{static_cast<unsigned char>(in[i])} << (8 * i);
    }
    if (size > maxBytes || size > kMaxInput) {
      return false;
    }
    const std::size_t start = out.size();
    out.resize(start + size);
    const int got =
        LZ4_decompress_safe(in.data() + kPrefix, &out[start], static_cast<int>(in.size() - kPrefix),
                            static_cast<int>(size));
    if (got < 0 || static_cast<std::size_t>(got) != size) {
      out.resize(start);
      return false;
    }
    return true;
  }

private:
  static constexpr std::size_t kPrefix = 4;
};

} // namespace cacheaside
