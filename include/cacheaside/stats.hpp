#pragma once
/// \file stats.hpp
/// Counters of what a cache did, readable at any time from any thread. The one list of counters
/// is CACHEASIDE_COUNTERS: Stats, the atomic counters, snapshots and the Prometheus text
/// (metrics/prometheus.hpp) are all generated from it.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <tuple>
#include <type_traits>

/// The counters: X(name, help) for each. A counter's help text is its documentation and its
/// Prometheus HELP line.
#define CACHEASIDE_COUNTERS(X)                                                                     \
  X(hits, "getOrLoad calls answered by the first look at Redis")                                   \
  X(misses, "getOrLoad calls whose first look found no usable value (absent, being loaded, "       \
            "or corrupt)")                                                                         \
  X(loads, "loader calls")                                                                         \
  X(leaseWaits, "calls that waited for another caller's load (another process or instance)")       \
  X(waitTimeouts, "calls whose wait budget ran out")                                               \
  X(coalesced, "calls that joined a lookup already in flight in this instance for the same "       \
               "key")                                                                              \
  X(decodeFailures, "stored records that could not be decoded (foreign bytes, another format "     \
                    "or schema); they are replaced")                                               \
  X(encodeFailures, "loaded values the serializer could not encode (returned, not cached)")        \
  X(redisErrors, "Redis calls that failed (connection, timeout, error reply)")                     \
  X(fencedWrites, "write-backs refused because the lease was lost (the key was invalidated "       \
                  "or overwritten, or the lease expired, while its value loaded)")                 \
  X(oversizedValues, "loaded values larger than maxValueBytes (returned, not cached)")             \
  X(staleServed, "calls answered with a stale value while another caller refreshed it (or "        \
                 "after a failed refresh)")                                                        \
  X(refreshes, "values reloaded before they expired (stale-while-revalidate and XFetch)")          \
  X(failSafes, "refreshes whose loader threw while a stale value was served instead")              \
  X(breakerBypasses, "calls that bypassed Redis because the circuit breaker was open")             \
  X(poolExhausted, "calls that found every pooled connection busy (a local limit, not a "          \
                   "Redis failure: never counted against Redis by the breaker)")                   \
  X(orphanedLeases, "leases left behind by a Redis failure while their holder loaded, "            \
                    "released later by token")

namespace cacheaside {

/// A snapshot of a cache's counters since it was constructed (see CACHEASIDE_COUNTERS for what
/// each one counts).
struct Stats {
#define CACHEASIDE_STATS_FIELD(name, help) std::uint64_t name = 0;
  CACHEASIDE_COUNTERS(CACHEASIDE_STATS_FIELD)
#undef CACHEASIDE_STATS_FIELD
};

/// One counter of the list: its name, help text and place in Stats.
struct CounterInfo {
  /// The field's name, e.g. "hits".
  const char* name;
  /// What it counts.
  const char* help;
  /// The field in Stats.
  std::uint64_t Stats::*field;
};

/// Every counter, in the list's order.
inline const auto& counterList() noexcept {
#define CACHEASIDE_COUNTER_INFO(name, help) CounterInfo{#name, help, &Stats::name},
  static const std::array list{CACHEASIDE_COUNTERS(CACHEASIDE_COUNTER_INFO)};
#undef CACHEASIDE_COUNTER_INFO
  return list;
}

/// Names a counter, for bumping it.
enum class Counter : std::size_t {
#define CACHEASIDE_COUNTER_ENUM(name, help) name,
  CACHEASIDE_COUNTERS(CACHEASIDE_COUNTER_ENUM)
#undef CACHEASIDE_COUNTER_ENUM
};

namespace detail {

// Relaxed atomics: each counter is independent, and a snapshot need not be a consistent cut.
class AtomicStats {
public:
  void bump(Counter c) noexcept {
    counters_[static_cast<std::size_t>(c)].fetch_add(1, std::memory_order_relaxed);
  }

  Stats snapshot() const noexcept {
    Stats s;
    std::size_t i = 0;
    for (const CounterInfo& info : counterList()) {
      s.*info.field = counters_[i++].load(std::memory_order_relaxed);
    }
    return s;
  }

private:
  std::array<std::atomic<std::uint64_t>, std::tuple_size_v<std::decay_t<decltype(counterList())>>>
      counters_{};
};

} // namespace detail
} // namespace cacheaside
