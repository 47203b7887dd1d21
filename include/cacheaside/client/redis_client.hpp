#pragma once
/// \file client/redis_client.hpp
/// The pluggable client boundary: the cache talks to Redis only through RedisClient, so an
/// adapter for another client library implements two functions. Each command names the key that
/// routes it, so a Redis Cluster client can pick the node (and group a pipeline by node) without
/// parsing arguments.

#include <cacheaside/errors.hpp>

#include <string>
#include <string_view>
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

/// One command as binary-safe arguments: {"GET", key}. The views must outlive the call.
using Argv = std::vector<std::string_view>;

/// A command and the key that routes it: on a Redis Cluster it must run on the node serving
/// that key's hash slot. Every key the command touches shares that slot. An empty key means the
/// command touches no key and may run anywhere.
struct Command {
  /// The key whose hash slot the command belongs to; empty for keyless commands.
  std::string_view key;
  /// The command's arguments, name first.
  Argv argv;
};

/// The interface the cache needs from a Redis client. Implementations must be safe to call from
/// many threads at once.
///
/// Transport failures (refused, reset, timed out) throw ConnectionError or one of its subclasses;
/// a Redis error reply is returned as a Reply of Type::Error, not thrown. A client that cannot
/// lend a connection because all of its own are busy throws PoolExhaustedError: a local
/// condition, which the cache does not count against Redis.
class RedisClient {
public:
  virtual ~RedisClient() = default;

  /// Sends one command and waits for its reply.
  virtual Reply command(const Command& command) = 0;

  /// Sends several commands, in one round trip per node; returns their replies in order.
  virtual std::vector<Reply> pipeline(const std::vector<Command>& commands) = 0;
};

} // namespace cacheaside
