#pragma once
/// \file events.hpp
/// One hook for logging and metrics: CacheOptions::onEvent receives what the cache does, as it
/// does it. Unset (the default), no event is built.

#include <chrono>
#include <functional>
#include <string_view>

namespace cacheaside {

/// What happened.
enum class EventType {
  Hit,           ///< a fresh value was served from Redis; duration: the call
  Miss,          ///< Redis held no usable value at the first look; duration: the call
  StaleServed,   ///< a stale value was served while another caller refreshes it
  Refresh,       ///< a value was reloaded before it expired (detail "stale" or "early");
                 ///< duration: the load
  FailSafe,      ///< a refresh's loader threw and the stale value was served; detail: what()
  RedisError,    ///< a Redis call failed; duration: the failed call; detail: the error
  BreakerOpen,   ///< consecutive Redis failures opened the circuit breaker
  BreakerClose,  ///< a probe succeeded and closed the circuit breaker
  DecodeFailure, ///< a stored record could not be decoded (it will be replaced)
};

/// How getOrLoad obtained the value it returned.
enum class Outcome {
  Hit,       ///< a fresh value (or a cached "not found") from Redis
  Stale,     ///< a stale value: another caller refreshes it, or its refresh failed (fail-safe)
  Loaded,    ///< this call ran the loader
  Coalesced, ///< this call joined a call for the same key in flight in this instance
};

/// One event. The views are valid only during the callback.
struct Event {
  /// What happened.
  EventType type;
  /// The user key (not the Redis key); empty for breaker events.
  std::string_view key;
  /// How long it took (see EventType); zero where it does not apply.
  std::chrono::microseconds duration{0};
  /// More about it, or empty.
  std::string_view detail;
};

/// Receives events synchronously on the calling thread: keep it fast, and do not throw (an
/// exception from it is swallowed).
using EventHandler = std::function<void(const Event&)>;

/// A short name for an event type, for logs and metric labels.
inline const char* toString(EventType type) noexcept {
  switch (type) {
  case EventType::Hit:
    return "hit";
  case EventType::Miss:
    return "miss";
  case EventType::StaleServed:
    return "stale_served";
  case EventType::Refresh:
    return "refresh";
  case EventType::FailSafe:
    return "fail_safe";
  case EventType::RedisError:
    return "redis_error";
  case EventType::BreakerOpen:
    return "breaker_open";
  case EventType::BreakerClose:
    return "breaker_close";
  case EventType::DecodeFailure:
    return "decode_failure";
  }
  return "unknown";
}

} // namespace cacheaside
