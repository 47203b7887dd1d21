#pragma once
/// \file envelope.hpp
/// The record stored in Redis for each key: a 12-byte header, then the payload.
///
///   byte 0     magic 0xCA            byte 1   format version (1)
///   byte 2     EntryKind             byte 3   reserved, 0
///   bytes 4-7  load time in ms, little-endian (how long the value took to load; XFetch uses it)
///   bytes 8-11 stale window in ms, little-endian: the last part of the key's Redis TTL during
///              which the value is stale (served while one caller refreshes it)
///   bytes 12.. payload: the serialized value (Value), nothing (Negative), or a token (Lease)
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

/// A decoded record; payload views into the decoded bytes.
struct Envelope {
  /// What the record holds.
  EntryKind kind = EntryKind::Value;
  /// How long the value took to load, in milliseconds.
  std::uint32_t loadMillis = 0;
  /// The stale window the record was written with, in milliseconds.
  std::uint32_t staleMillis = 0;
  /// The serialized value, or the lease token.
  std::string_view payload;
};

namespace envelope {

/// First byte of every record.
inline constexpr unsigned char kMagic = 0xCA;
/// The format version this library writes and reads.
inline constexpr unsigned char kVersion = 1;
/// Bytes before the payload.
inline constexpr std::size_t kHeaderSize = 12;

/// Appends a header to out; the caller appends the payload after it.
inline void appendHeader(std::string& out, EntryKind kind, std::uint32_t loadMillis,
                         std::uint32_t staleMillis = 0) {
  out.push_back(static_cast<char>(kMagic));
  out.push_back(static_cast<char>(kVersion));
  out.push_back(static_cast<char>(kind));
  out.push_back('\0');
  for (const std::uint32_t field : {loadMillis, staleMillis}) {
    for (int i = 0; i < 4; ++i) {
      out.push_back(static_cast<char>((field >> (8 * i)) & 0xFF));
    }
  }
}

/// Decodes a record; std::nullopt for bytes this library did not write (or wrote in another
/// format version).
inline std::optional<Envelope> decode(std::string_view bytes) noexcept {
  if (bytes.size() < kHeaderSize || static_cast<unsigned char>(bytes[0]) != kMagic ||
      static_cast<unsigned char>(bytes[1]) != kVersion || bytes[3] != '\0') {
    return std::nullopt;
  }
  const auto kind = static_cast<unsigned char>(bytes[2]);
  if (kind > static_cast<unsigned char>(EntryKind::Lease)) {
    return std::nullopt;
  }
  Envelope env;
  env.kind = static_cast<EntryKind>(kind);
  const auto u32At = [&](std::size_t at) {
    std::uint32_t v = 0;
    for (std::size_t i = 0; i < 4; ++i) {
      v |= std::uint32_t{static_cast<unsigned char>(bytes[at + i])} << (8 * i);
    }
    return v;
  };
  env.loadMillis = u32At(4);
  env.staleMillis = u32At(8);
  env.payload = bytes.substr(kHeaderSize);
  if (env.kind == EntryKind::Negative && !env.payload.empty()) {
    return std::nullopt;
  }
  return env;
}

} // namespace envelope
} // namespace cacheaside
