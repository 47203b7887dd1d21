#pragma once
/// \file options.hpp
/// Cache-wide options and per-call overrides. Every field has a finite default.

#include <chrono>
#include <cstddef>
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
};

} // namespace cacheaside
