#pragma once
// What the orchestrator and its worker processes share: one anonymous MAP_SHARED mapping made
// before the workers are forked. Lock-free atomics only, so that a worker SIGKILLed at any point
// leaves nothing locked. Times are CLOCK_MONOTONIC nanoseconds (steady_clock on Linux), which
// every process of the machine reads alike.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace chaos {

inline std::int64_t monoNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/// The faults the schedule injects.
enum class Fault : int {
  RedisKill,   ///< the cache's redis-server SIGKILLed, restarted after a pause (data lost)
  ClientPause, ///< CLIENT PAUSE <ms> ALL
  DebugSleep,  ///< DEBUG SLEEP longer than the command timeout
  HolderKill,  ///< a worker SIGKILLed while its loader holds a key's lease
  ClientKill,  ///< CLIENT KILL TYPE normal: every client connection dropped
  Count
};

inline const char* faultName(Fault f) {
  switch (f) {
  case Fault::RedisKill:
    return "redis-server SIGKILL + restart";
  case Fault::ClientPause:
    return "CLIENT PAUSE ALL";
  case Fault::DebugSleep:
    return "DEBUG SLEEP > commandTimeout";
  case Fault::HolderKill:
    return "lease holder SIGKILLed mid-load";
  case Fault::ClientKill:
    return "CLIENT KILL TYPE normal";
  case Fault::Count:
    break;
  }
  return "?";
}

constexpr int kMaxKeys = 256;
constexpr std::size_t kMaxLoads = std::size_t{1} << 19;
constexpr std::size_t kMaxSlow = std::size_t{1} << 16;
constexpr std::size_t kMaxWindows = 4096;
constexpr std::size_t kMaxSlots = 1024;
constexpr std::size_t kMaxStaleDetails = 32;
constexpr std::size_t kMaxErrors = std::size_t{1} << 16;
constexpr std::size_t kMaxOrphans = 4096;
constexpr std::size_t kMaxStalls = std::size_t{1} << 16;

/// Per key: what the writers published.
struct alignas(64) KeyState {
  /// The highest version whose invalidate() had returned (the bound every later read must meet).
  std::atomic<std::int64_t> published{0};
  /// invalidate() calls begun: a load labels itself with this (its invalidation generation).
  std::atomic<std::int64_t> invStarted{0};
  /// invalidate() calls in progress now.
  std::atomic<std::int32_t> invInFlight{0};
};

/// One loader call, recorded when it starts (so a load whose process is killed still counts).
struct LoadRecord {
  std::int32_t key = -1;
  std::int16_t duringInvalidate = 0; ///< an invalidate() of the key was in progress at the start
  std::int16_t refresh = 0; ///< the call had already been served a hit: an early refresh (XFetch)
  std::int64_t generation = 0; ///< KeyState::invStarted at the start
  std::int64_t startNs = 0;
};

/// A Redis error a cache reported through onEvent (any process), for explaining extra loads.
struct ErrorEvent {
  std::int64_t ns = 0;
  std::int32_t key = -1;       ///< -1: no key (a lease renewal, an invalidate)
  std::int32_t invalidate = 0; ///< 1: an invalidate() that threw (recorded by the writer)
};

/// A lease seen unrenewed by the monitor: its remaining TTL had fallen below what a live
/// holder's renewals (every lockTtl / 3) allow.
struct OrphanSeen {
  std::int64_t ns = 0;
  std::int32_t key = -1;
  std::int64_t pttl = 0;
};

/// A call slower than the recording threshold.
struct SlowCall {
  std::int64_t startNs = 0;
  std::int64_t endNs = 0;
  std::int32_t key = -1;
  std::int32_t invalidate = 0; ///< 1: invalidate(), 0: getOrLoad()
  std::int32_t pid = 0;
  std::int32_t threw = 0; ///< the call threw (invalidate: Redis failed; getOrLoad: a failure)
};

/// A time a worker's canary thread, asking to sleep 5 ms, was not run for 50 ms or more: the
/// machine (not the cache) held every thread of that process up for about that long.
struct Stall {
  std::int64_t startNs = 0;
  std::int64_t endNs = 0;
  std::int32_t pid = 0;
};

/// One fault window, [startNs, endNs], written by the orchestrator only.
struct Window {
  std::int64_t startNs = 0;
  std::int64_t endNs = 0;
  Fault fault = Fault::Count;
};

/// A stale read, for the report.
struct StaleDetail {
  std::int32_t key = -1;
  std::int32_t cause = 0; ///< 0 coalesced onto a call in flight, 1 own hit, 2 own load
  std::int64_t got = 0;
  std::int64_t bound = 0;
  std::int64_t startNs = 0;
  std::int64_t endNs = 0;
  std::int32_t pid = 0;
};

/// One worker process's cache counters (CacheAside::stats(), summed over its instances),
/// overwritten by the worker every 200 ms. A restarted worker gets a new slot.
struct alignas(64) Slot {
  std::atomic<std::uint64_t> hits{0}, misses{0}, loads{0}, leaseWaits{0}, waitTimeouts{0},
      coalesced{0}, redisErrors{0}, fencedWrites{0}, breakerBypasses{0}, refreshes{0};
};

struct Shared {
  std::atomic<int> stop{0};

  // The lease-holder fault: the orchestrator arms (1) a key; the first loader of it claims it
  // (2), publishes its pid and waits to be killed.
  std::atomic<int> killState{0};
  std::atomic<int> killKey{-1};
  std::atomic<int> killPid{0};
  std::atomic<std::int64_t> killClaimNs{0};

  // Totals, added to by every thread of every worker.
  std::atomic<std::uint64_t> reads{0}, failedReads{0}, wrongValues{0}, loaderErrors{0},
      staleReads{0}, invalidates{0}, invalidateErrors{0}, writes{0};
  /// Stale reads by cause: coalesced onto a call in flight, own hit, own load.
  std::atomic<std::uint64_t> staleByCause[3] = {};
  std::atomic<std::int64_t> maxReadNs{0}, maxInvalidateNs{0};
  std::atomic<std::int64_t> lastFailureNs{0};

  std::atomic<std::size_t> windowCount{0};
  Window windows[kMaxWindows];

  std::atomic<std::size_t> loadCount{0};
  LoadRecord loads[kMaxLoads];

  std::atomic<std::size_t> slowCount{0};
  SlowCall slow[kMaxSlow];

  std::atomic<std::size_t> staleDetailCount{0};
  StaleDetail staleDetails[kMaxStaleDetails];

  std::atomic<std::size_t> errorCount{0};
  ErrorEvent errors[kMaxErrors];

  std::atomic<std::size_t> orphanCount{0};
  OrphanSeen orphans[kMaxOrphans];
  std::atomic<std::uint64_t> monitorSamples{0};

  std::atomic<std::size_t> stallCount{0};
  Stall stalls[kMaxStalls];

  std::atomic<std::size_t> slotCount{0};
  Slot slots[kMaxSlots];

  KeyState keys[kMaxKeys];
};

inline void raiseMax(std::atomic<std::int64_t>& max, std::int64_t value) {
  std::int64_t prev = max.load(std::memory_order_relaxed);
  while (value > prev && !max.compare_exchange_weak(prev, value, std::memory_order_relaxed)) {
  }
}

} // namespace chaos
