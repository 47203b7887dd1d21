#pragma once
// SHA-1 (FIPS 180-4), only to name Lua scripts for EVALSHA and to fingerprint corrupt values.
// Not used for anything that needs collision resistance.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace cacheaside::detail {

inline std::uint32_t rotl32(std::uint32_t x, int n) noexcept {
  return (x << n) | (x >> (32 - n));
}

inline void sha1Block(std::array<std::uint32_t, 5>& h, const unsigned char* block) noexcept {
  std::uint32_t w[80];
  for (int i = 0; i < 16; ++i) {
    w[i] = (std::uint32_t{block[4 * i]} << 24) | (std::uint32_t{block[4 * i + 1]} << 16) |
           (std::uint32_t{block[4 * i + 2]} << 8) | std::uint32_t{block[4 * i + 3]};
  }
  for (int i = 16; i < 80; ++i) {
    w[i] = rotl32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
  }
  std::uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
  for (int i = 0; i < 80; ++i) {
    std::uint32_t f, k;
    if (i < 20) {
      f = (b & c) | (~b & d);
      k = 0x5A827999u;
    } else if (i < 40) {
      f = b ^ c ^ d;
      k = 0x6ED9EBA1u;
    } else if (i < 60) {
      f = (b & c) | (b & d) | (c & d);
      k = 0x8F1BBCDCu;
    } else {
      f = b ^ c ^ d;
      k = 0xCA62C1D6u;
    }
    const std::uint32_t t = rotl32(a, 5) + f + e + k + w[i];
    e = d;
    d = c;
    c = rotl32(b, 30);
    b = a;
    a = t;
  }
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
  h[4] += e;
}

/// Lowercase hex SHA-1 of the bytes.
inline std::string sha1Hex(std::string_view data) {
  std::array<std::uint32_t, 5> h{0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
  const auto* bytes = reinterpret_cast<const unsigned char*>(data.data());
  const std::size_t full = data.size() / 64 * 64;
  for (std::size_t off = 0; off < full; off += 64) {
    sha1Block(h, bytes + off);
  }
  // The tail, the 0x80 marker and the 64-bit big-endian bit length fill one or two blocks.
  unsigned char tail[128] = {};
  const std::size_t rest = data.size() - full;
  for (std::size_t i = 0; i < rest; ++i) {
    tail[i] = bytes[full + i];
  }
  tail[rest] = 0x80;
  const std::size_t tailLen = rest < 56 ? 64 : 128;
  const std::uint64_t bits = static_cast<std::uint64_t>(data.size()) * 8;
  for (int i = 0; i < 8; ++i) {
    tail[tailLen - 1 - i] = static_cast<unsigned char>(bits >> (8 * i));
  }
  sha1Block(h, tail);
  if (tailLen == 128) {
    sha1Block(h, tail + 64);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(40, '0');
  for (int i = 0; i < 5; ++i) {
    for (int j = 0; j < 8; ++j) {
      out[static_cast<std::size_t>(i * 8 + j)] =
          kHex[(h[static_cast<std::size_t>(i)] >> (28 - 4 * j)) & 0xF];
    }
  }
  return out;
}

} // namespace cacheaside::detail
