#pragma once
/// \file codec/record.hpp
/// The record codec: envelope + serializer + size limit + optional compression, in one place.
/// It turns a T into the bytes stored in Redis and back, and makes lease records. No I/O.

#include <cacheaside/codec/compressor.hpp>
#include <cacheaside/codec/envelope.hpp>
#include <cacheaside/codec/serializer.hpp>
#include <cacheaside/detail/random.hpp>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace cacheaside {

/// How the codec stores values.
struct CodecOptions {
  /// Serialized values larger than this are not cached (and compressed records that would
  /// decompress to more are not read). Default 1 MiB.
  std::size_t maxValueBytes = std::size_t{1} << 20;
  /// Compresses serialized values of at least compressAbove bytes; none by default.
  std::shared_ptr<const Compressor> compressor;
  /// The smallest serialized value worth compressing. Default 1 KiB.
  std::size_t compressAbove = 1024;
};

namespace codec {

/// Why a value was not encoded.
enum class Encoded {
  Ok,       ///< the record is in out
  Failed,   ///< the serializer threw
  TooLarge, ///< the serialized value is over maxValueBytes
};

/// Reads a record's header: kind, metadata and payload; std::nullopt for foreign bytes.
inline std::optional<Envelope> inspect(std::string_view bytes) noexcept {
  return envelope::decode(bytes);
}

/// A lease record: a header of kind Lease and a fresh 128-bit random token.
inline std::string leaseRecord() {
  std::string lease;
  lease.reserve(envelope::kHeaderSize + 16);
  envelope::appendHeader(lease, EntryKind::Lease, 0);
  auto& random = detail::ThreadRandom::local();
  for (int word = 0; word < 2; ++word) {
    const std::uint64_t bits = random.next();
    for (int i = 0; i < 8; ++i) {
      lease.push_back(static_cast<char>((bits >> (8 * i)) & 0xFF));
    }
  }
  return lease;
}

/// A "not found" record.
inline std::string negativeRecord(std::uint32_t loadMillis) {
  std::string out;
  envelope::appendHeader(out, EntryKind::Negative, loadMillis);
  return out;
}

} // namespace codec

/// Encodes and decodes the records of T with serializer S.
template <typename T, typename S> class Codec {
public:
  /// Keeps the options (validated by the cache).
  explicit Codec(CodecOptions options) : options_(std::move(options)) {}

  /// Encodes value as a record into out (cleared first), with an unset expiry stamp for the
  /// server to set. On Failed, error holds the serializer's message.
  codec::Encoded encode(const T& value, std::uint32_t loadMillis, std::uint32_t staleMillis,
                        std::string& out, std::string& error) const {
    out.clear();
    envelope::appendHeader(out, EntryKind::Value, loadMillis, staleMillis, 0,
                           envelope::kUnsetExpiryStamp);
    const std::size_t headerSize = out.size();
    try {
      S::encode(value, out);
    } catch (const std::exception& e) {
      error = e.what();
      return codec::Encoded::Failed;
    }
    const std::size_t size = out.size() - headerSize;
    if (size > options_.maxValueBytes) {
      return codec::Encoded::TooLarge;
    }
    if (options_.compressor && size >= options_.compressAbove) {
      std::string packed;
      envelope::appendHeader(packed, EntryKind::Value, loadMillis, staleMillis,
                             options_.compressor->id(), envelope::kUnsetExpiryStamp);
      options_.compressor->compress(std::string_view(out).substr(headerSize), packed);
      if (packed.size() < out.size()) {
        out.swap(packed);
      }
    }
    return codec::Encoded::Ok;
  }

  /// Decodes a Value record's payload into a T; std::nullopt (with error set) when the bytes
  /// do not decode: a corrupt or foreign payload, another schema, an unknown compressor.
  std::optional<T> decode(const Envelope& env, std::string& error) const {
    std::string_view payload = env.payload;
    std::string inflated;
    if (env.compressor != 0) {
      if (!options_.compressor || options_.compressor->id() != env.compressor) {
        error = "compressed with compressor " + std::to_string(env.compressor) +
                ", which this cache does not have";
        return std::nullopt;
      }
      if (!options_.compressor->decompress(payload, inflated, options_.maxValueBytes)) {
        error = "compressed payload does not decompress within maxValueBytes";
        return std::nullopt;
      }
      payload = inflated;
    }
    try {
      return std::optional<T>(S::decode(payload));
    } catch (const std::exception& e) {
      error = e.what();
      return std::nullopt;
    }
  }

  /// The options.
  const CodecOptions& options() const noexcept { return options_; }

private:
  CodecOptions options_;
};

} // namespace cacheaside
