#pragma once
/// \file stats.hpp
/// Counters of what a cache did, readable at any time from any thread.

#include <atomic>
#include <cstdint>

namespace cacheaside {

/// A snapshot of a cache's counters since it was constructed.
struct Stats {
  /// getOrLoad calls answered by the first look at Redis.
  std::uint64_t hits = 0;
  /// getOrLoad calls whose first look found no usable value (absent, being loaded, or corrupt).
  std::uint64_t misses = 0;
  /// Loader calls.
  std::uint64_t loads = 0;
  /// Calls that waited for another caller's load (another process, or another cache instance).
  std::uint64_t leaseWaits = 0;
  /// Calls whose wait budget ran out.
  std::uint64_t waitTimeouts = 0;
  /// Calls that joined a lookup already in flight in this instance for the same key (counted
  /// when they join, before they get the result).
  std::uint64_t coalesced = 0;
  /// Stored records that could not be decoded (foreign bytes, another format, another schema).
  std::uint64_t decodeFailures = 0;
  /// Loaded values the serializer could not encode (they were returned, not cached).
  std::uint64_t encodeFailures = 0;
  /// Redis calls that failed (connection, timeout, error reply).
  std::uint64_t redisErrors = 0;
  /// Write-backs refused because the lease was lost (the key was invalidated or overwritten, or
  /// the lease expired, while its value loaded).
  std::uint64_t fencedWrites = 0;
  /// Loaded values larger than maxValueBytes (returned, not cached).
  std::uint64_t oversizedValues = 0;
  /// Calls answered with a stale value while another caller refreshed it (or after a failed
  /// refresh).
  std::uint64_t staleServed = 0;
  /// Values reloaded before they expired (stale-while-revalidate and XFetch).
  std::uint64_t refreshes = 0;
  /// Refreshes whose loader threw while a stale value was served instead.
  std::uint64_t failSafes = 0;
  /// Calls that bypassed Redis because the circuit breaker was open.
  std::uint64_t breakerBypasses = 0;
};

namespace detail {

// Relaxed atomics: each counter is independent, and a snapshot need not be a consistent cut.
struct AtomicStats {
  std::atomic<std::uint64_t> hits{0}, misses{0}, loads{0}, leaseWaits{0}, waitTimeouts{0},
      coalesced{0}, decodeFailures{0}, encodeFailures{0}, redisErrors{0}, fencedWrites{0},
      oversizedValues{0}, staleServed{0}, refreshes{0}, failSafes{0}, breakerBypasses{0};

  static void bump(std::atomic<std::uint64_t>& counter) noexcept {
    counter.fetch_add(1, std::memory_order_relaxed);
  }

  Stats snapshot() const noexcept {
    const auto get = [](const std::atomic<std::uint64_t>& c) {
      return c.load(std::memory_order_relaxed);
    };
    Stats s;
    s.hits = get(hits);
    s.misses = get(misses);
    s.loads = get(loads);
    s.leaseWaits = get(leaseWaits);
    s.waitTimeouts = get(waitTimeouts);
    s.coalesced = get(coalesced);
    s.decodeFailures = get(decodeFailures);
    s.encodeFailures = get(encodeFailures);
    s.redisErrors = get(redisErrors);
    s.fencedWrites = get(fencedWrites);
    s.oversizedValues = get(oversizedValues);
    s.staleServed = get(staleServed);
    s.refreshes = get(refreshes);
    s.failSafes = get(failSafes);
    s.breakerBypasses = get(breakerBypasses);
    return s;
  }
};

} // namespace detail
} // namespace cacheaside
