#pragma once
// Redis key layout and key text for error messages.

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

namespace cacheaside::detail {

// "<namespace>:{<key>}": the braces make the user key the Redis Cluster hash tag.
inline std::string redisKey(std::string_view keyNamespace, std::string_view key) {
  if (key.empty()) {
    throw std::invalid_argument("cacheaside: the key must not be empty");
  }
  std::string out;
  out.reserve(keyNamespace.size() + key.size() + 3);
  out.append(keyNamespace);
  out.append(":{");
  out.append(key);
  out.push_back('}');
  return out;
}

// The key as printable ASCII for messages: other bytes as \xHH, cut after 120 bytes.
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
