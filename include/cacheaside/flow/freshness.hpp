#pragma once
/// \file flow/freshness.hpp
/// Pure functions of time: whether a value read from Redis should be reloaded now (stale
/// window, XFetch) and TTL jitter. Randomness comes in as an argument, uniform in (0, 1].

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>

namespace cacheaside::flow {

/// Why a value found in Redis should be reloaded now.
enum class Refresh {
  None,  ///< fresh: serve it
  Stale, ///< inside its stale window: serve it while one caller reloads it
  Early, ///< fresh, but XFetch drew an early reload
};

/// Decides from the key's remaining TTL on the server (pttl, ms; negative: no expiry or
/// unknown), the stale window and load time the record was written with, XFetch's beta and a
/// uniform draw u in (0, 1]. Stale once the remaining TTL is inside the stale window; early
/// (XFetch, Vattani et al. 2015) when the remaining fresh time <= -loadMillis * beta * ln(u).
inline Refresh refreshReason(long long pttl, std::uint32_t staleMillis, std::uint32_t loadMillis,
                             double beta, double u) noexcept {
  if (pttl < 0) {
    return Refresh::None;
  }
  const long long fresh = pttl - static_cast<long long>(staleMillis);
  if (fresh <= 0) {
    return staleMillis > 0 ? Refresh::Stale : Refresh::None;
  }
  if (beta > 0 && loadMillis > 0) {
    const double gap = -static_cast<double>(loadMillis) * beta * std::log(u);
    if (static_cast<double>(fresh) <= gap) {
      return Refresh::Early;
    }
  }
  return Refresh::None;
}

/// How long a near (in-process) copy of a value read from Redis may be served: until Redis
/// would call it stale (pttl as for refreshReason, less staleMillis), less the margin in which
/// XFetch may reload it early (-ln(u) > 4 for under 2 % of draws). Unbounded (max) when the TTL
/// is unknown; zero or less: not to be held.
inline std::chrono::milliseconds nearLifetime(long long pttl, std::uint32_t staleMillis,
                                              std::uint32_t loadMillis, double beta) noexcept {
  if (pttl < 0) {
    return std::chrono::milliseconds::max();
  }
  const auto margin = static_cast<long long>(std::ceil(loadMillis * beta * 4.0));
  return std::chrono::milliseconds(pttl - static_cast<long long>(staleMillis) - margin);
}

/// ttl scaled by 1 + jitter * (2u - 1), u uniform in (0, 1]: within [1 - jitter, 1 + jitter]
/// of ttl, and at least 1 ms.
inline std::chrono::milliseconds jittered(std::chrono::milliseconds ttl, double jitter,
                                          double u) noexcept {
  if (jitter == 0.0) {
    return ttl;
  }
  const double factor = 1.0 + jitter * (2.0 * u - 1.0);
  const auto ms = static_cast<std::chrono::milliseconds::rep>(
      std::llround(static_cast<double>(ttl.count()) * factor));
  return std::chrono::milliseconds(std::max<std::chrono::milliseconds::rep>(ms, 1));
}

/// How long a load took, in whole milliseconds, saturated to the envelope's 32 bits.
inline std::uint32_t loadMillis(std::chrono::microseconds took) noexcept {
  return static_cast<std::uint32_t>(
      std::clamp<long long>(took.count() / 1000, 0, static_cast<long long>(UINT32_MAX)));
}

} // namespace cacheaside::flow
