#include "support/catch.hpp"

#include <cacheaside/flow/freshness.hpp>

#include <chrono>
#include <cmath>

using cacheaside::flow::jittered;
using cacheaside::flow::Refresh;
using cacheaside::flow::refreshReason;
using namespace std::chrono_literals;

TEST_CASE("freshness: no expiry, or an unknown TTL, never refreshes") {
  CHECK(refreshReason(-1, 1000, 1000, 1.0, 1e-9) == Refresh::None);
  CHECK(refreshReason(-2, 0, 5000, 100.0, 1e-9) == Refresh::None);
}

TEST_CASE("freshness: stale exactly once the remaining TTL is inside the stale window") {
  CHECK(refreshReason(1001, 1000, 0, 1.0, 0.5) == Refresh::None);
  CHECK(refreshReason(1000, 1000, 0, 1.0, 0.5) == Refresh::Stale);
  CHECK(refreshReason(0, 1000, 0, 1.0, 0.5) == Refresh::Stale);
  CHECK(refreshReason(0, 0, 0, 1.0, 0.5) == Refresh::None); // expiring, no stale window
}

TEST_CASE("freshness: XFetch refreshes when the fresh time left <= -load * beta * ln(u)") {
  const double u = std::exp(-1.0); // -ln(u) = 1: the gap is load * beta
  CHECK(refreshReason(100, 0, 100, 1.0, u) == Refresh::Early);
  CHECK(refreshReason(101, 0, 100, 1.0, u) == Refresh::None);
  CHECK(refreshReason(200, 0, 100, 2.0, u) == Refresh::Early);
  CHECK(refreshReason(1'000'000, 0, 100, 1.0, 1.0) == Refresh::None); // u = 1: never early
  CHECK(refreshReason(50, 0, 100, 0.0, 1e-12) == Refresh::None);      // beta 0: off
  CHECK(refreshReason(50, 0, 0, 1.0, 1e-12) == Refresh::None);        // no load time known
}

TEST_CASE("jitter stays within its bounds and never drops below 1 ms") {
  CHECK(jittered(1000ms, 0.0, 0.3) == 1000ms);
  CHECK(jittered(1000ms, 0.1, 1.0) == 1100ms);
  CHECK(jittered(1000ms, 0.1, 0.5) == 1000ms);
  CHECK(jittered(1000ms, 0.1, 1e-12) == 900ms);
  CHECK(jittered(1ms, 0.9, 1e-12) == 1ms);
}

TEST_CASE("load time saturates to the envelope's 32 bits") {
  CHECK(cacheaside::flow::loadMillis(std::chrono::microseconds(2500)) == 2);
  CHECK(cacheaside::flow::loadMillis(std::chrono::hours(24 * 365 * 200)) == UINT32_MAX);
  CHECK(cacheaside::flow::loadMillis(std::chrono::microseconds(-5)) == 0);
}
