#pragma once
/// \file store/script.hpp
/// A Lua script with its SHA-1, for EVALSHA.

#include <cacheaside/detail/sha1.hpp>

#include <string>
#include <utility>

namespace cacheaside {

/// A Lua script with its SHA-1 computed once, for EVALSHA.
class Script {
public:
  /// Wraps the script's source.
  explicit Script(std::string source)
      : source_(std::move(source)), sha1_(detail::sha1Hex(source_)) {}

  /// The Lua source.
  const std::string& source() const noexcept { return source_; }
  /// The lowercase hex SHA-1 that Redis knows the script by.
  const std::string& sha1() const noexcept { return sha1_; }

private:
  std::string source_;
  std::string sha1_;
};

} // namespace cacheaside
