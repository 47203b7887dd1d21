#pragma once
/// \file client.hpp
/// The pluggable client boundary: the policy in cache_aside.hpp talks to Redis only through
/// RedisClient, so an adapter for another client library implements two functions.

#include <cacheaside/detail/sha1.hpp>
#include <cacheaside/errors.hpp>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cacheaside {

/// One Redis reply (RESP2 shapes), owned and independent of any client library.
struct Reply {
  /// The reply's RESP type.
  enum class Type { Nil, String, Status, Integer, Array, Error };

  /// What kind of reply this is.
  Type type = Type::Nil;
  /// The bytes of a String, Status or Error reply.
  std::string str;
  /// The value of an Integer reply.
  long long integer = 0;
  /// The elements of an Array reply.
  std::vector<Reply> elements;

  /// True for a nil bulk string or nil array.
  bool isNil() const noexcept { return type == Type::Nil; }
  /// True for an error reply.
  bool isError() const noexcept { return type == Type::Error; }
};

/// One command as binary-safe arguments: {"SET", key, value}. The views must outlive the call.
using Argv = std::vector<std::string_view>;

/// The interface the cache needs from a Redis client. Implementations must be safe to call from
/// many threads at once.
///
/// Transport failures (refused, reset, timed out) throw ConnectionError or TimeoutError; a Redis
/// error reply is returned as a Reply of Type::Error, not thrown.
class RedisClient {
public:
  virtual ~RedisClient() = default;

  /// Sends one command and waits for its reply.
  virtual Reply command(const Argv& argv) = 0;

  /// Sends several commands in one round trip; returns their replies in order.
  virtual std::vector<Reply> pipeline(const std::vector<Argv>& commands) = 0;
};

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

/// Runs a script with EVALSHA and, when Redis does not have it cached (a restarted or failed-over
/// server answers NOSCRIPT), once more with EVAL. Returns the script's reply, errors included.
inline Reply evalScript(RedisClient& client, const Script& script,
                        const std::vector<std::string_view>& keys,
                        const std::vector<std::string_view>& args) {
  const std::string numKeys = std::to_string(keys.size());
  Argv argv;
  argv.reserve(3 + keys.size() + args.size());
  argv.push_back("EVALSHA");
  argv.push_back(script.sha1());
  argv.push_back(numKeys);
  argv.insert(argv.end(), keys.begin(), keys.end());
  argv.insert(argv.end(), args.begin(), args.end());
  Reply reply = client.command(argv);
  if (reply.isError() && reply.str.compare(0, 8, "NOSCRIPT") == 0) {
    argv[0] = "EVAL";
    argv[1] = script.source();
    reply = client.command(argv);
  }
  return reply;
}

} // namespace cacheaside
