#pragma once
/// \file codec/compressor.hpp
/// The interface of the optional value compressors (codec/lz4.hpp, codec/zstd.hpp).

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace cacheaside {

/// A compression algorithm for stored values; the cache stores its id in each record's header.
class Compressor {
public:
  virtual ~Compressor() = default;
  /// The id written into records (1..15); 0 means "not compressed" and is reserved.
  virtual std::uint8_t id() const noexcept = 0;
  /// Appends the compressed form of in to out.
  virtual void compress(std::string_view in, std::string& out) const = 0;
  /// Appends the decompressed form of in to out; returns false (out unspecified) when in is not
  /// valid compressed data or would decompress to more than maxBytes.
  virtual bool decompress(std::string_view in, std::string& out, std::size_t maxBytes) const = 0;
};

} // namespace cacheaside
