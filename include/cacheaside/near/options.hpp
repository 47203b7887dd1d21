#pragma once
/// \file near/options.hpp
/// NearCacheOptions: the near-cache settings of a cache (CacheOptions::nearCache).

#include <cacheaside/near/invalidation.hpp>
#include <cacheaside/near/store.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <stdexcept>

namespace cacheaside {

/// An in-process tier in front of Redis, kept coherent by an invalidation feed
/// (near/hiredis_feed.hpp). Off unless feed is set.
struct NearCacheOptions {
  /// Where invalidations come from; the feed must track the cache's keyNamespace. Null (the
  /// default): no near cache, and the read path is exactly the one without.
  std::shared_ptr<near::InvalidationFeed> feed;
  /// Entry and byte bounds (an entry is charged its Redis record's size, its key and a fixed
  /// overhead), and the number of shards.
  near::NearStoreOptions bounds;
  /// How long an entry may be served when the remaining TTL in Redis was not read (xfetchBeta 0
  /// and no staleWindow). In (0, 1 hour]; default 1 s.
  std::chrono::milliseconds maxTtl = std::chrono::seconds(1);
  /// The cross-process staleness bound: an entry is served only while the feed has confirmed,
  /// within this long, that it reported every change (its heartbeat); else reads go to Redis.
  /// Must exceed the feed's pingInterval + lagLimit. In (0, 1 hour]; default 500 ms.
  std::chrono::milliseconds maxFeedSilence = std::chrono::milliseconds(500);

  /// Throws std::invalid_argument naming the first field out of range (only when feed is set).
  void validate() const {
    if (!feed) {
      return;
    }
    bounds.validate();
    if (maxTtl <= std::chrono::milliseconds::zero() || maxTtl > std::chrono::hours(1)) {
      throw std::invalid_argument("cacheaside: NearCacheOptions::maxTtl must be in (0, 1 hour]");
    }
    if (maxFeedSilence <= std::chrono::milliseconds::zero() ||
        maxFeedSilence > std::chrono::hours(1)) {
      throw std::invalid_argument(
          "cacheaside: NearCacheOptions::maxFeedSilence must be in (0, 1 hour]");
    }
  }
};

} // namespace cacheaside
