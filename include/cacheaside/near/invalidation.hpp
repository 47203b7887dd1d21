#pragma once
/// \file near/invalidation.hpp
/// The boundary between a near cache and the source of its invalidations: a feed delivers the
/// Redis keys that changed to the listeners of their key prefix, and tells them when it cannot
/// (then they must forget everything and stop serving until it is back). near/hiredis_feed.hpp
/// implements it over one Redis connection; a Redis Cluster feed would run one per node and
/// report down() for all while any node's feed is down or the topology changes.

#include <cacheaside/store/keys.hpp>

#include <chrono>
#include <string>
#include <string_view>

namespace cacheaside::near {

/// The Redis key prefix of a cache's values in keyNamespace ("<ns>:{"), as a feed tracks it.
inline std::string trackingPrefix(std::string_view keyNamespace) {
  std::string out;
  store::appendEscaped(out, keyNamespace);
  out.append(":{");
  return out;
}

/// Receives a feed's reports. Called from the feed's thread, one call at a time.
class InvalidationListener {
public:
  virtual ~InvalidationListener() = default;
  /// The Redis key redisKey (under the listener's prefix) changed, expired or was evicted.
  virtual void invalidated(std::string_view redisKey) = 0;
  /// Every key may have changed (FLUSHALL, FLUSHDB): forget everything, keep serving.
  virtual void flushed() = 0;
  /// The feed is subscribed: invalidations of every change from now on will be reported.
  virtual void up() = 0;
  /// The feed lost its connection or lags: changes may go unreported until up() again.
  virtual void down() = 0;
  /// Every change made before asOf has been reported (a heartbeat: the feed's PING, sent at
  /// asOf, was answered after everything queued before it).
  virtual void confirmed(std::chrono::steady_clock::time_point asOf) = 0;
};

/// A source of invalidations. Thread-safe.
class InvalidationFeed {
public:
  virtual ~InvalidationFeed() = default;
  /// Reports the keys starting with prefix to listener (borrowed until detach()), and calls its
  /// up() at once when the feed is up. Throws std::invalid_argument for a prefix the feed does
  /// not track.
  virtual void attach(std::string_view prefix, InvalidationListener& listener) = 0;
  /// Stops reporting to listener; when it returns, no call to it is in progress.
  virtual void detach(InvalidationListener& listener) = 0;
};

} // namespace cacheaside::near
