#pragma once
/// \file options.hpp
/// Cache-wide options and per-call overrides. Every field has a finite default.

#include <cacheaside/events.hpp>
#include <chrono>

#include <cstddef>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>

namespace cacheaside {

/// What a caller does when another caller's load has not finished within its wait budget.
enum class WaitTimeoutPolicy {
  LoadWithoutCaching, ///< call the loader itself and return its value without writing it
  Throw,              ///< throw LockTimeoutError
};

/// Options of one CacheAside instance.
struct CacheOptions {
  /// Prefix of every Redis key: a user key K is stored at "<keyNamespace>:{K}", its hash tag
  /// being the user key. Default "cacheaside".
  std::string keyNamespace = "cacheaside";
  /// How long a loaded value is kept. Default 5 minutes.
  std::chrono::milliseconds ttl = std::chrono::minutes(5);
  /// Each TTL is scaled by a random factor in [1 - ttlJitter, 1 + ttlJitter], so entries
  /// written together do not expire together. In [0, 1); default 0.1.
  double ttlJitter = 0.1;
  /// How long a "not found" (an empty std::optional from the loader) is kept. Default 30 s.
  std::chrono::milliseconds negativeTtl = std::chrono::seconds(30);
  /// Lifetime of a lease: if its holder dies, another caller may load after this. Default 5 s.
  std::chrono::milliseconds lockTtl = std::chrono::seconds(5);
  /// How long a caller waits for another caller's load before onWaitTimeout applies. Default 2 s.
  std::chrono::milliseconds waitBudget = std::chrono::seconds(2);
  /// First pause between two looks at a key another caller is loading; it doubles up to
  /// pollMax. Default 2 ms.
  std::chrono::milliseconds pollInitial = std::chrono::milliseconds(2);
  /// Longest pause between two looks. Default 50 ms.
  std::chrono::milliseconds pollMax = std::chrono::milliseconds(50);
  /// What a caller does when waitBudget runs out. Default LoadWithoutCaching.
  WaitTimeoutPolicy onWaitTimeout = WaitTimeoutPolicy::LoadWithoutCaching;
  /// Serialized values larger than this are returned but not cached. Default 1 MiB.
  std::size_t maxValueBytes = std::size_t{1} << 20;
  /// How long a value stays in Redis after its ttl as a stale value: a stale hit is served at
  /// once while one caller (across all processes) refreshes it. Zero (the default) turns it off.
  std::chrono::milliseconds staleWindow = std::chrono::milliseconds(0);
  /// After a refresh's loader throws with a stale value at hand, how long no caller, in any
  /// process, tries to refresh that key again (the stale value is served). Default 1 s.
  std::chrono::milliseconds failSafeThrottle = std::chrono::seconds(1);
  /// XFetch (Vattani et al., 2015): a read refreshes early when the value's remaining fresh
  /// time is at most -loadTime * xfetchBeta * ln(rand). Larger refreshes earlier; 0 disables.
  /// Default 1. With xfetchBeta 0 and no staleWindow a hit is one command instead of a
  /// pipeline of two (SET NX PX GET and PTTL), about 3 % faster; every cache sharing a
  /// namespace should then agree on it, since such a cache treats stale records as fresh.
  double xfetchBeta = 1.0;
  /// Consecutive Redis failures that open the circuit breaker. Default 5.
  unsigned breakerThreshold = 5;
  /// How long an open breaker bypasses Redis before one call probes it. Default 500 ms.
  std::chrono::milliseconds breakerCooldown = std::chrono::milliseconds(500);
  /// Receives hit, miss, stale, refresh, fail-safe, Redis-error, breaker and decode-failure
  /// events (events.hpp). Default none.
  EventHandler onEvent;
  /// The clock for deadlines, durations and the breaker; freshness never depends on it (it is
  /// read from the key's remaining TTL on the server). Default: std::chrono::steady_clock.
  std::function<std::chrono::steady_clock::time_point()> clock;

  /// Throws std::invalid_argument naming the first field out of range.
  void validate() const {
    using std::chrono::milliseconds;
    if (ttl <= milliseconds::zero()) {
      throw std::invalid_argument("cacheaside: CacheOptions::ttl must be positive");
    }
    if (!(ttlJitter >= 0.0 && ttlJitter < 1.0)) {
      throw std::invalid_argument("cacheaside: CacheOptions::ttlJitter must be in [0, 1)");
    }
    if (negativeTtl <= milliseconds::zero()) {
      throw std::invalid_argument("cacheaside: CacheOptions::negativeTtl must be positive");
    }
    if (lockTtl <= milliseconds::zero()) {
      throw std::invalid_argument("cacheaside: CacheOptions::lockTtl must be positive");
    }
    if (waitBudget < milliseconds::zero()) {
      throw std::invalid_argument("cacheaside: CacheOptions::waitBudget must not be negative");
    }
    if (pollInitial <= milliseconds::zero() || pollMax < pollInitial) {
      throw std::invalid_argument(
          "cacheaside: CacheOptions::pollInitial must be positive and not above pollMax");
    }
    if (maxValueBytes == 0) {
      throw std::invalid_argument("cacheaside: CacheOptions::maxValueBytes must be positive");
    }
    if (staleWindow < milliseconds::zero() || staleWindow > std::chrono::hours(24 * 24)) {
      throw std::invalid_argument("cacheaside: CacheOptions::staleWindow must be in [0, 24 days]");
    }
    if (failSafeThrottle <= milliseconds::zero()) {
      throw std::invalid_argument("cacheaside: CacheOptions::failSafeThrottle must be positive");
    }
    if (!(xfetchBeta >= 0.0 && xfetchBeta <= 100.0)) {
      throw std::invalid_argument("cacheaside: CacheOptions::xfetchBeta must be in [0, 100]");
    }
    if (breakerThreshold == 0 || breakerCooldown <= milliseconds::zero()) {
      throw std::invalid_argument(
          "cacheaside: CacheOptions::breakerThreshold and breakerCooldown must be positive");
    }
  }
};

/// Per-call overrides of CacheOptions; an empty field keeps the cache's setting. Durations must
/// be positive (waitBudget: not negative), else the call throws std::invalid_argument.
struct CallOptions {
  /// Overrides CacheOptions::ttl.
  std::optional<std::chrono::milliseconds> ttl;
  /// Overrides CacheOptions::negativeTtl.
  std::optional<std::chrono::milliseconds> negativeTtl;
  /// Overrides CacheOptions::waitBudget.
  std::optional<std::chrono::milliseconds> waitBudget;
  /// Overrides CacheOptions::onWaitTimeout.
  std::optional<WaitTimeoutPolicy> onWaitTimeout;
  /// Overrides CacheOptions::staleWindow (for values this call writes).
  std::optional<std::chrono::milliseconds> staleWindow;
};

} // namespace cacheaside
