#pragma once
/// \file codec/envelope.hpp
/// The record stored in Redis for each key: a 12-byte header, optional extensions, the payload.
///
///   byte 0     magic 0xCA            byte 1   format version (1)
///   byte 2     EntryKind             byte 3   flags:
///                                               bits 0-3 compressor id (0: not compressed)
///                                               bit 4    an extension block follows the header
///                                               bits 5-7 zero
///   bytes 4-7  load time in ms, little-endian (how long the value took to load; XFetch uses it)
///   bytes 8-11 stale window in ms, little-endian: the last part of the key's Redis TTL during
///              which the value is stale (served while one caller refreshes it)
///   [extension block, when flagged: a 2-byte little-endian length, then that many bytes of
///    fields; each field is a type byte, a 2-byte little-endian length and that many bytes; a
///    reader skips the types it does not know, and a block whose fields overrun it holds no
///    field. Values and "not found" records may carry one; leases never do]
///   payload    the serialized value (Value), nothing (Negative), or a token (Lease)
///
/// Extension fields:
///   type 1  expiry stamp (Value records), 8 bytes little-endian: when the key expires, in
///           milliseconds since the Unix epoch by the Redis server's clock. The codec writes it
///           first, as zeros (bytes 17-24 of the record); the store's write scripts set it from
///           the server's TIME as they store the record, so freshness is judged by one clock for
///           all hosts. Zero or absent (records of earlier versions): unknown.
///   type 2  tags: the tag generations read before the value was loaded: for each tag a 2-byte
///           little-endian name length, the name, a 1-byte generation length, the generation.
///   types 3-255 are free for later features.
///
/// Pure functions, no I/O: anything that is not exactly this shape decodes to std::nullopt.

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

namespace cacheaside {

/// What a stored record holds.
enum class EntryKind : std::uint8_t {
  Value = 0,    ///< a cached value
  Negative = 1, ///< a cached "not found"
  Lease = 2,    ///< no value yet: a caller holds the lease and is loading it
};

/// A decoded record; the views point into the decoded bytes.
struct Envelope {
  /// What the record holds.
  EntryKind kind = EntryKind::Value;
  /// How long the value took to load, in milliseconds.
  std::uint32_t loadMillis = 0;
  /// The stale window the record was written with, in milliseconds.
  std::uint32_t staleMillis = 0;
  /// The compressor that produced the payload (0: none).
  std::uint8_t compressor = 0;
  /// The extension block's bytes (empty when there is none).
  std::string_view extensions;
  /// The serialized value, or the lease token.
  std::string_view payload;
};

namespace envelope {

/// First byte of every record.
inline constexpr unsigned char kMagic = 0xCA;
/// The format version this library writes and reads.
inline constexpr unsigned char kVersion = 1;
/// Bytes before the extensions and the payload.
inline constexpr std::size_t kHeaderSize = 12;
/// Flag bit: an extension block follows the header.
inline constexpr unsigned char kHasExtensions = 0x10;
/// Flag bits that name the compressor.
inline constexpr unsigned char kCompressorMask = 0x0F;
/// Extension field type: the expiry stamp.
inline constexpr unsigned char kExpiryStamp = 1;
/// Size of the expiry stamp's value.
inline constexpr std::size_t kExpiryStampSize = 8;
/// Where the codec puts the expiry stamp's value in a record: after the header, the block's
/// length and the field's type and length.
inline constexpr std::size_t kExpiryStampAt = kHeaderSize + 2 + 3;

/// Appends a header to out (with compressor id compressor, 0..15) and, when extensions is not
/// empty, the extension block holding those field bytes (at most 65535); the caller appends
/// the payload after it.
inline void appendHeader(std::string& out, EntryKind kind, std::uint32_t loadMillis,
                         std::uint32_t staleMillis = 0, std::uint8_t compressor = 0,
                         std::string_view extensions = {}) {
  out.push_back(static_cast<char>(kMagic));
  out.push_back(static_cast<char>(kVersion));
  out.push_back(static_cast<char>(kind));
  out.push_back(static_cast<char>((compressor & kCompressorMask) |
                                  (extensions.empty() ? 0 : kHasExtensions)));
  for (const std::uint32_t field : {loadMillis, staleMillis}) {
    for (int i = 0; i < 4; ++i) {
      out.push_back(static_cast<char>((field >> (8 * i)) & 0xFF));
    }
  }
  if (!extensions.empty()) {
    out.push_back(static_cast<char>(extensions.size() & 0xFF));
    out.push_back(static_cast<char>((extensions.size() >> 8) & 0xFF));
    out.append(extensions);
  }
}

/// The extension field of a Value record that the server stamps with the key's expiry: zeros
/// until then.
inline constexpr std::string_view kUnsetExpiryStamp{"\x01\x08\0\0\0\0\0\0\0\0\0", 11};

/// The value of extension field type in an extension block; std::nullopt when there is none
/// (or the block is malformed).
inline std::optional<std::string_view> findField(std::string_view extensions,
                                                 unsigned char type) noexcept {
  while (extensions.size() >= 3) {
    const auto here = static_cast<unsigned char>(extensions[0]);
    const std::size_t length = static_cast<unsigned char>(extensions[1]) |
                               (std::size_t{static_cast<unsigned char>(extensions[2])} << 8);
    if (extensions.size() - 3 < length) {
      return std::nullopt;
    }
    if (here == type) {
      return extensions.substr(3, length);
    }
    extensions.remove_prefix(3 + length);
  }
  return std::nullopt;
}

/// The key's expiry stamped into a record (ms since the Unix epoch, server clock); 0 when the
/// record carries none.
inline std::uint64_t expiresAt(const Envelope& env) noexcept {
  const auto stamp = findField(env.extensions, kExpiryStamp);
  if (!stamp || stamp->size() != kExpiryStampSize) {
    return 0;
  }
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < kExpiryStampSize; ++i) {
    v |= std::uint64_t{static_cast<unsigned char>((*stamp)[i])} << (8 * i);
  }
  return v;
}

/// Whether record (encoded bytes) has the expiry stamp's field where the codec puts it, for the
/// server to set.
inline bool hasExpiryStampSlot(std::string_view record) noexcept {
  return record.size() >= kExpiryStampAt + kExpiryStampSize &&
         (static_cast<unsigned char>(record[3]) & kHasExtensions) != 0 &&
         static_cast<unsigned char>(record[kHeaderSize + 2]) == kExpiryStamp &&
         static_cast<unsigned char>(record[kHeaderSize + 3]) == kExpiryStampSize &&
         record[kHeaderSize + 4] == 0;
}

/// Decodes a record; std::nullopt for bytes this library did not write (or wrote in another
/// format version).
inline std::optional<Envelope> decode(std::string_view bytes) noexcept {
  if (bytes.size() < kHeaderSize || static_cast<unsigned char>(bytes[0]) != kMagic ||
      static_cast<unsigned char>(bytes[1]) != kVersion) {
    return std::nullopt;
  }
  const auto kind = static_cast<unsigned char>(bytes[2]);
  const auto flags = static_cast<unsigned char>(bytes[3]);
  if (kind > static_cast<unsigned char>(EntryKind::Lease) ||
      (flags & ~(kCompressorMask | kHasExtensions)) != 0) {
    return std::nullopt;
  }
  Envelope env;
  env.kind = static_cast<EntryKind>(kind);
  env.compressor = flags & kCompressorMask;
  const auto u32At = [&](std::size_t at) {
    std::uint32_t v = 0;
    for (std::size_t i = 0; i < 4; ++i) {
      v |= std::uint32_t{static_cast<unsigned char>(bytes[at + i])} << (8 * i);
    }
    return v;
  };
  env.loadMillis = u32At(4);
  env.staleMillis = u32At(8);
  std::string_view rest = bytes.substr(kHeaderSize);
  if ((flags & kHasExtensions) != 0) {
    if (rest.size() < 2) {
      return std::nullopt;
    }
    const std::size_t length = static_cast<unsigned char>(rest[0]) |
                               (std::size_t{static_cast<unsigned char>(rest[1])} << 8);
    if (rest.size() - 2 < length) {
      return std::nullopt;
    }
    env.extensions = rest.substr(2, length);
    rest = rest.substr(2 + length);
  }
  env.payload = rest;
  if (env.kind != EntryKind::Value &&
      (env.compressor != 0 || (env.kind == EntryKind::Lease && !env.extensions.empty()))) {
    return std::nullopt;
  }
  if (env.kind == EntryKind::Negative && !env.payload.empty()) {
    return std::nullopt;
  }
  return env;
}

/// Extension field type: the tags.
inline constexpr unsigned char kTagsField = 2;

/// Appends a field (type, then its bytes) to an extension block being built in out.
inline void appendField(std::string& out, unsigned char type, std::string_view bytes) {
  out.push_back(static_cast<char>(type));
  out.push_back(static_cast<char>(bytes.size() & 0xFF));
  out.push_back(static_cast<char>((bytes.size() >> 8) & 0xFF));
  out.append(bytes);
}

/// Appends one tag and its generation to a tags field being built in out (name below 64 KiB,
/// generation below 256 bytes).
inline void appendTag(std::string& out, std::string_view name, std::string_view generation) {
  out.push_back(static_cast<char>(name.size() & 0xFF));
  out.push_back(static_cast<char>((name.size() >> 8) & 0xFF));
  out.append(name);
  out.push_back(static_cast<char>(generation.size() & 0xFF));
  out.append(generation);
}

/// The generation a tags field holds for tag name; std::nullopt when it holds none.
inline std::optional<std::string_view> tagGeneration(std::string_view tags,
                                                     std::string_view name) noexcept {
  while (tags.size() >= 2) {
    const std::size_t n = static_cast<unsigned char>(tags[0]) |
                          (std::size_t{static_cast<unsigned char>(tags[1])} << 8);
    if (tags.size() - 2 < n + 1) {
      return std::nullopt;
    }
    const std::string_view here = tags.substr(2, n);
    const std::size_t g = static_cast<unsigned char>(tags[2 + n]);
    if (tags.size() - 3 - n < g) {
      return std::nullopt;
    }
    if (here == name) {
      return tags.substr(3 + n, g);
    }
    tags = tags.substr(3 + n + g);
  }
  return std::nullopt;
}

/// Appends extension fields to record (a Value or Negative record), after the fields it has,
/// so that the expiry stamp keeps its place; the block stays below 64 KiB.
inline void addExtensions(std::string& record, std::string_view fields) {
  std::size_t length = 0;
  if ((static_cast<unsigned char>(record[3]) & kHasExtensions) != 0) {
    length = static_cast<unsigned char>(record[kHeaderSize]) |
             (std::size_t{static_cast<unsigned char>(record[kHeaderSize + 1])} << 8);
    record.insert(kHeaderSize + 2 + length, fields);
  } else {
    record.insert(kHeaderSize, 2, '\0');
    record.insert(kHeaderSize + 2, fields);
    record[3] = static_cast<char>(static_cast<unsigned char>(record[3]) | kHasExtensions);
  }
  length += fields.size();
  record[kHeaderSize] = static_cast<char>(length & 0xFF);
  record[kHeaderSize + 1] = static_cast<char>((length >> 8) & 0xFF);
}

} // namespace envelope
} // namespace cacheaside
