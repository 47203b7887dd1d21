#pragma once
/// \file store/server_clock.hpp
/// The Redis server's clock as one process sees it: an offset from the local steady clock,
/// learnt from a TIME reply that a lookup carries when no sample is fresh. With it a cache
/// reads a record's expiry stamp (set from the server's TIME by the write scripts) without
/// asking the key's PTTL, so a hit stays one command and every host judges freshness by the
/// server's clock, whatever its own clock says.
///
/// A sample can only lag the server: it is taken when the reply arrives, after its trip back
/// and after any wait for the CPU. So a new sample replaces the estimate only when it says the
/// server is further ahead, or when the estimate, aged by kDriftPerSecond, says less: one reply
/// delayed by a busy machine cannot hold freshness back for long. A sample is asked for every
/// kResample, which bounds the drift between the two clocks and follows a server whose clock
/// was stepped forward at once (stepped back, or replaced by a failover to a server behind it,
/// at kDriftPerSecond).

#include <cacheaside/client/redis_client.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <limits>
#include <optional>
#include <string>

namespace cacheaside::store {

/// The server's time estimated from the local steady clock. Thread-safe and lock-free; a hit
/// only reads it (no shared writes on the hit path once a sample is fresh).
class ServerClock {
public:
  /// The local clock the offset is kept against.
  using Clock = std::chrono::steady_clock;
  /// How long a sample is used before a lookup asks for a new one.
  static constexpr std::chrono::milliseconds kResample{30000};
  /// How far the estimate may fall behind per second of its age when a later sample says less
  /// (1000 ppm: twice what NTP lets a clock slew).
  static constexpr std::chrono::microseconds kDriftPerSecond{1000};

  /// Whether the caller's lookup should carry a TIME command: true when a sample is due, for
  /// one caller until serverNow() finds one due again.
  bool claimSample() const noexcept {
    return due_.load(std::memory_order_relaxed) && due_.exchange(false, std::memory_order_relaxed);
  }

  /// Records the reply to TIME received at now; ignores anything that is not a TIME reply.
  void sample(const Reply& time, Clock::time_point now) const noexcept {
    if (time.type != Reply::Type::Array || time.elements.size() != 2 ||
        time.elements[0].type != Reply::Type::String ||
        time.elements[1].type != Reply::Type::String) {
      return;
    }
    char* end = nullptr;
    const long long seconds = std::strtoll(time.elements[0].str.c_str(), &end, 10);
    const long long micros = std::strtoll(time.elements[1].str.c_str(), &end, 10);
    if (seconds <= 0 || micros < 0 || micros >= 1000000) {
      return;
    }
    const long long local = localMicros(now);
    long long offset = seconds * 1000000 + micros - local;
    const long long at = sampledAt_.load(std::memory_order_acquire);
    if (at != kNever && local > at) {
      const long long aged = offset_.load(std::memory_order_relaxed) -
                             (local - at) / 1000000 * kDriftPerSecond.count() -
                             (local - at) % 1000000 * kDriftPerSecond.count() / 1000000;
      offset = std::max(offset, aged);
    }
    offset_.store(offset, std::memory_order_relaxed);
    sampledAt_.store(local, std::memory_order_release);
  }

  /// The server's time at local time now, in ms since the Unix epoch; std::nullopt before the
  /// first sample. Marks a new sample due once this one is older than kResample.
  std::optional<long long> serverNowMillis(Clock::time_point now) const noexcept {
    const long long at = sampledAt_.load(std::memory_order_acquire);
    const long long local = localMicros(now);
    if (at == kNever || local - at >= kResampleMicros) {
      if (!due_.load(std::memory_order_relaxed)) {
        due_.store(true, std::memory_order_relaxed);
      }
      if (at == kNever) {
        return std::nullopt;
      }
    }
    return (local + offset_.load(std::memory_order_relaxed)) / 1000;
  }

private:
  static constexpr long long kNever = std::numeric_limits<long long>::min();
  static constexpr long long kResampleMicros = kResample.count() * 1000;

  static long long localMicros(Clock::time_point t) noexcept {
    return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  }

  mutable std::atomic<long long> offset_{0};
  mutable std::atomic<long long> sampledAt_{kNever};
  mutable std::atomic<bool> due_{true};
};

} // namespace cacheaside::store
