#pragma once
/// \file store/keys.hpp
/// The Redis key layout of a cache, and the Redis Cluster hash slot of a key.
///
/// A user key K in namespace N is stored at "N:{K'}", where K' is K with '%', '{' and '}'
/// percent-encoded (N likewise). The braces then always enclose a non-empty tag free of braces,
/// so every key the cache derives from K ("N:{K'}", "N:{K'}:lease") hashes to the slot of K'
/// whatever bytes K and N hold.

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace cacheaside::store {

/// Appends s to out with '%', '{' and '}' percent-encoded: the result holds no brace.
inline void appendEscaped(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (;;) {
    const std::size_t at = s.find_first_of("%{}"); // the bytes between go in one append
    out.append(s.substr(0, at));
    if (at == std::string_view::npos) {
      return;
    }
    const auto u = static_cast<unsigned char>(s[at]);
    out.push_back('%');
    out.push_back(kHex[u >> 4]);
    out.push_back(kHex[u & 0xF]);
    s.remove_prefix(at + 1);
  }
}

/// The Redis keys behind one user key.
struct Keys {
  /// Holds the value record, or the lease record of the caller loading it.
  std::string value;
  /// The refresh lease: held by the one caller reloading a value that is still served.
  std::string refreshLease;
};

/// "<keyNamespace'><infix><name'>}" with both escaped: infix ends with the hash tag's "{".
inline std::string hashTagged(std::string_view keyNamespace, std::string_view infix,
                              std::string_view name) {
  std::string out;
  out.reserve(keyNamespace.size() + infix.size() + name.size() + 1);
  appendEscaped(out, keyNamespace);
  out.append(infix);
  appendEscaped(out, name);
  out.push_back('}');
  return out;
}

/// The Redis key holding user key's value in keyNamespace (what redis-cli would GET). Throws
/// std::invalid_argument for an empty key.
inline std::string valueKey(std::string_view keyNamespace, std::string_view key) {
  if (key.empty()) {
    throw std::invalid_argument("cacheaside: the key must not be empty");
  }
  return hashTagged(keyNamespace, ":{", key);
}

/// The keys of user key in keyNamespace. Throws std::invalid_argument for an empty key.
inline Keys keysFor(std::string_view keyNamespace, std::string_view key) {
  Keys keys;
  keys.value = valueKey(keyNamespace, key);
  keys.refreshLease.reserve(keys.value.size() + 6);
  keys.refreshLease.append(keys.value).append(":lease");
  return keys;
}

/// The Redis key holding tag's generation in keyNamespace: "N:tag:{tag'}" (never a value key,
/// which has a brace right after "N:"). Throws std::invalid_argument for an empty tag.
inline std::string tagKey(std::string_view keyNamespace, std::string_view tag) {
  if (tag.empty()) {
    throw std::invalid_argument("cacheaside: a tag must not be empty");
  }
  return hashTagged(keyNamespace, ":tag:{", tag);
}

/// CRC16-CCITT (XMODEM), the checksum Redis Cluster hashes keys with.
inline std::uint16_t crc16(std::string_view bytes) noexcept {
  std::uint16_t crc = 0;
  for (const char c : bytes) {
    crc = static_cast<std::uint16_t>(crc ^ (static_cast<unsigned char>(c) << 8));
    for (int bit = 0; bit < 8; ++bit) {
      crc = static_cast<std::uint16_t>((crc & 0x8000) != 0 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
  }
  return crc;
}

/// The Redis Cluster hash slot of a key (0..16383): of its hash tag, the bytes between the
/// first '{' and the first '}' after it, when that is non-empty; of the whole key otherwise.
inline std::uint16_t hashSlot(std::string_view key) noexcept {
  const std::size_t open = key.find('{');
  if (open != std::string_view::npos) {
    const std::size_t close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1) {
      key = key.substr(open + 1, close - open - 1);
    }
  }
  return static_cast<std::uint16_t>(crc16(key) & 0x3FFF);
}

} // namespace cacheaside::store

namespace cacheaside::detail {

/// The key as printable ASCII for messages: other bytes as \xHH, cut after 120 bytes.
inline std::string printableKey(std::string_view key) {
  static constexpr char kHex[] = "0123456789abcdef";
  constexpr std::size_t kMax = 120;
  std::string out;
  for (std::size_t i = 0; i < key.size() && i < kMax; ++i) {
    const auto c = static_cast<unsigned char>(key[i]);
    if (c >= 0x20 && c < 0x7F && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xF]);
    }
  }
  if (key.size() > kMax) {
    out += "...(" + std::to_string(key.size()) + " bytes)";
  }
  return out;
}

} // namespace cacheaside::detail
