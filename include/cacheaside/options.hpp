#pragma once
/// \file options.hpp
/// Options: EntryOptions (how one entry is kept: the cache's defaults, and what a call may
/// override), CacheOptions (the cache's own settings, with its EntryOptions defaults as a base),
/// and CallOptions (per-call overrides of EntryOptions). Every field has a finite default, and
/// every duration is capped so that no TTL arithmetic can overflow.

#include <cacheaside/codec/compressor.hpp>
#include <cacheaside/events.hpp>
#include <cacheaside/near/options.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace cacheaside {

/// What a caller does when another caller's load has not finished within its wait budget.
enum class WaitTimeoutPolicy {
  LoadWithoutCaching, ///< call the loader itself and return its value without writing it
  Throw,              ///< throw LockTimeoutError
};

/// The longest ttl, negativeTtl or waitBudget accepted: ten years. TTL arithmetic (jitter,
/// stale window) stays far from overflow below it.
inline constexpr std::chrono::milliseconds kMaxEntryDuration = std::chrono::hours(24 * 3650);
/// The longest stale window: 24 days (the record header stores it in 32 bits of ms).
inline constexpr std::chrono::milliseconds kMaxStaleWindow = std::chrono::hours(24 * 24);

/// How an entry is kept: the cache's defaults (CacheOptions derives from it), and the fields a
/// call may override (CallOptions).
struct EntryOptions {
  /// How long a loaded value is kept. In (0, 10 years]; default 5 minutes.
  std::chrono::milliseconds ttl = std::chrono::minutes(5);
  /// How long a "not found" (an empty std::optional from the loader) is kept. In (0, 10
  /// years]; default 30 s.
  std::chrono::milliseconds negativeTtl = std::chrono::seconds(30);
  /// How long a value stays in Redis after its ttl as a stale value: a stale hit is served at
  /// once while one caller (across all processes) refreshes it. In [0, 24 days]; zero (the
  /// default) turns it off.
  std::chrono::milliseconds staleWindow = std::chrono::milliseconds(0);
  /// How long a caller waits for another caller's load before onWaitTimeout applies. In
  /// [0, 10 years]; default 2 s.
  std::chrono::milliseconds waitBudget = std::chrono::seconds(2);
  /// What a caller does when waitBudget runs out. Default LoadWithoutCaching.
  WaitTimeoutPolicy onWaitTimeout = WaitTimeoutPolicy::LoadWithoutCaching;

  /// Throws std::invalid_argument naming the first field out of range.
  void validate() const {
    using std::chrono::milliseconds;
    if (ttl <= milliseconds::zero() || ttl > kMaxEntryDuration) {
      throw std::invalid_argument("cacheaside: ttl must be in (0, 10 years]");
    }
    if (negativeTtl <= milliseconds::zero() || negativeTtl > kMaxEntryDuration) {
      throw std::invalid_argument("cacheaside: negativeTtl must be in (0, 10 years]");
    }
    if (staleWindow < milliseconds::zero() || staleWindow > kMaxStaleWindow) {
      throw std::invalid_argument("cacheaside: staleWindow must be in [0, 24 days]");
    }
    if (waitBudget < milliseconds::zero() || waitBudget > kMaxEntryDuration) {
      throw std::invalid_argument("cacheaside: waitBudget must be in [0, 10 years]");
    }
  }
};

/// Per-call overrides of EntryOptions: an empty field keeps the cache's setting. The result
/// must pass EntryOptions::validate(), else the call throws std::invalid_argument.
struct CallOptions {
  /// Overrides EntryOptions::ttl.
  std::optional<std::chrono::milliseconds> ttl;
  /// Overrides EntryOptions::negativeTtl.
  std::optional<std::chrono::milliseconds> negativeTtl;
  /// Overrides EntryOptions::staleWindow (for values this call writes).
  std::optional<std::chrono::milliseconds> staleWindow;
  /// Overrides EntryOptions::waitBudget.
  std::optional<std::chrono::milliseconds> waitBudget;
  /// Overrides EntryOptions::onWaitTimeout.
  std::optional<WaitTimeoutPolicy> onWaitTimeout;
  /// Tags of the value (e.g. "category:books"): CacheAside::invalidateTag of any of them
  /// invalidates it. Each costs one more command in the lookup's pipeline and a few bytes in
  /// the record; at most kMaxTags, each non-empty and at most kMaxTagBytes. Name the same tags
  /// on every call for a key: a value written without one of a call's tags reads as
  /// invalidated to that call.
  std::vector<std::string> tags;

  /// The most tags one call may name.
  static constexpr std::size_t kMaxTags = 16;
  /// The longest tag, in bytes.
  static constexpr std::size_t kMaxTagBytes = 1024;

  /// defaults with this call's overrides applied, validated.
  EntryOptions applyTo(const EntryOptions& defaults) const {
    EntryOptions out = defaults;
    out.ttl = ttl.value_or(out.ttl);
    out.negativeTtl = negativeTtl.value_or(out.negativeTtl);
    out.staleWindow = staleWindow.value_or(out.staleWindow);
    out.waitBudget = waitBudget.value_or(out.waitBudget);
    out.onWaitTimeout = onWaitTimeout.value_or(out.onWaitTimeout);
    out.validate();
    if (tags.size() > kMaxTags) {
      throw std::invalid_argument("cacheaside: a call names at most 16 tags");
    }
    for (const std::string& tag : tags) {
      if (tag.empty() || tag.size() > kMaxTagBytes) {
        throw std::invalid_argument("cacheaside: a tag must have 1 to 1024 bytes");
      }
    }
    return out;
  }
};

/// How a get-or-load call looks for its key.
enum class LookupMode {
  /// A plain GET, and the lease-taking SET NX PX GET only when the key is empty: a hit costs
  /// the server its cheapest command, a miss one more round trip. For hit ratios above a few
  /// percent, the cheaper choice for Redis.
  Peek,
  /// SET NX PX GET at once: a miss saves that round trip, every hit costs the server a
  /// heavier command (about 2.5 % of a hit's time in benchmarks/bench.cpp).
  Lease,
};

/// Options of one CacheAside instance: its entry defaults (the EntryOptions base) and its own
/// settings.
struct CacheOptions : EntryOptions {
  /// Prefix of every Redis key: a user key K is stored at "<keyNamespace>:{K}" (with '%', '{'
  /// and '}' percent-encoded in both), its hash tag being the user key. Default "cacheaside".
  std::string keyNamespace = "cacheaside";
  /// Each TTL is scaled by a random factor in [1 - ttlJitter, 1 + ttlJitter], so entries
  /// written together do not expire together. In [0, 1); default 0.1.
  double ttlJitter = 0.1;
  /// Lifetime of a lease: if its holder dies, another caller may load after this; renewed
  /// every lockTtl / 3 while its load runs. In (0, 1 hour]; default 5 s.
  std::chrono::milliseconds lockTtl = std::chrono::seconds(5);
  /// First pause between two looks at a key another caller is loading; it doubles up to
  /// pollMax. Default 2 ms.
  std::chrono::milliseconds pollInitial = std::chrono::milliseconds(2);
  /// Longest pause between two looks. At most 10 s; default 50 ms.
  std::chrono::milliseconds pollMax = std::chrono::milliseconds(50);
  /// Serialized values larger than this are returned but not cached. Default 1 MiB.
  std::size_t maxValueBytes = std::size_t{1} << 20;
  /// Compresses stored values of at least compressAbove serialized bytes (codec/lz4.hpp,
  /// codec/zstd.hpp). Default none. Every cache sharing a namespace must be able to read what
  /// the others write.
  std::shared_ptr<const Compressor> compressor;
  /// The smallest serialized value worth compressing. Default 1 KiB.
  std::size_t compressAbove = 1024;
  /// After a refresh's loader throws with a stale value at hand, how long no caller, in any
  /// process, tries to refresh that key again (the stale value is served). In (0, 1 hour];
  /// default 1 s.
  std::chrono::milliseconds failSafeThrottle = std::chrono::seconds(1);
  /// XFetch (Vattani et al., 2015): a read refreshes early when the value's remaining fresh
  /// time is at most -loadTime * xfetchBeta * ln(rand). Larger refreshes earlier; 0 disables.
  /// In [0, 100]; default 1. Freshness is judged by the expiry the server stamps into each
  /// record and a sampled server clock, so a hit stays one command either way. With xfetchBeta
  /// 0 and no staleWindow, every cache sharing a namespace should agree on it, since such a
  /// cache treats stale records as fresh.
  double xfetchBeta = 1.0;
  /// How getOrLoad looks for its key (getOrLoadMany always takes leases in its one lookup).
  LookupMode lookup = LookupMode::Peek;
  /// Consecutive Redis failures that open the circuit breaker. Default 5.
  unsigned breakerThreshold = 5;
  /// How long an open breaker bypasses Redis before one call probes it. In (0, 1 hour];
  /// default 500 ms.
  std::chrono::milliseconds breakerCooldown = std::chrono::milliseconds(500);
  /// Receives hit, miss, stale, refresh, fail-safe, Redis-error, breaker and decode-failure
  /// events (events.hpp). Default none.
  EventHandler onEvent;
  /// The clock for deadlines, durations and the breaker; freshness never depends on it (it is
  /// read from the key's remaining TTL on the server). Default: std::chrono::steady_clock.
  std::function<std::chrono::steady_clock::time_point()> clock;
  /// An in-process tier in front of Redis, kept coherent by Redis's invalidations (see
  /// near/hiredis_feed.hpp). Off by default (no feed).
  NearCacheOptions nearCache;

  /// The entry defaults.
  const EntryOptions& entry() const noexcept { return *this; }

  /// Throws std::invalid_argument naming the first field out of range.
  void validate() const {
    using std::chrono::milliseconds;
    EntryOptions::validate();
    const milliseconds hour = std::chrono::hours(1);
    if (!(ttlJitter >= 0.0 && ttlJitter < 1.0)) {
      throw std::invalid_argument("cacheaside: CacheOptions::ttlJitter must be in [0, 1)");
    }
    if (lockTtl <= milliseconds::zero() || lockTtl > hour) {
      throw std::invalid_argument("cacheaside: CacheOptions::lockTtl must be in (0, 1 hour]");
    }
    if (pollInitial <= milliseconds::zero() || pollMax < pollInitial ||
        pollMax > std::chrono::seconds(10)) {
      throw std::invalid_argument("cacheaside: CacheOptions::pollInitial must be positive and "
                                  "not above pollMax, and pollMax at most 10 s");
    }
    if (maxValueBytes == 0) {
      throw std::invalid_argument("cacheaside: CacheOptions::maxValueBytes must be positive");
    }
    if (compressor && (compressor->id() == 0 || compressor->id() > 15)) {
      throw std::invalid_argument("cacheaside: CacheOptions::compressor must have an id in 1..15");
    }
    if (failSafeThrottle <= milliseconds::zero() || failSafeThrottle > hour) {
      throw std::invalid_argument(
          "cacheaside: CacheOptions::failSafeThrottle must be in (0, 1 hour]");
    }
    if (!(xfetchBeta >= 0.0 && xfetchBeta <= 100.0)) {
      throw std::invalid_argument("cacheaside: CacheOptions::xfetchBeta must be in [0, 100]");
    }
    if (breakerThreshold == 0 || breakerCooldown <= milliseconds::zero() ||
        breakerCooldown > hour) {
      throw std::invalid_argument("cacheaside: CacheOptions::breakerThreshold must be positive "
                                  "and breakerCooldown in (0, 1 hour]");
    }
    nearCache.validate();
  }
};

} // namespace cacheaside
