#include "support/catch.hpp"

#include <cacheaside/detail/circuit_breaker.hpp>

#include <chrono>

using cacheaside::detail::CircuitBreaker;
using Change = CircuitBreaker::Change;
using namespace std::chrono_literals;

namespace {
const CircuitBreaker::Clock::time_point t0{};
}

TEST_CASE("the breaker opens after threshold consecutive failures, not scattered ones") {
  CircuitBreaker breaker(3, 500ms);
  CHECK(breaker.allow(t0));
  CHECK(breaker.onFailure(t0) == Change::None);
  CHECK(breaker.onFailure(t0) == Change::None);
  CHECK(breaker.onSuccess() == Change::None); // resets the run
  CHECK(breaker.onFailure(t0) == Change::None);
  CHECK(breaker.onFailure(t0) == Change::None);
  CHECK_FALSE(breaker.isOpen());
  CHECK(breaker.onFailure(t0) == Change::Opened);
  CHECK(breaker.isOpen());
  CHECK_FALSE(breaker.allow(t0 + 499ms));
}

TEST_CASE("after the cool-down exactly one probe is let through and its success closes") {
  CircuitBreaker breaker(1, 500ms);
  breaker.onFailure(t0);
  CHECK(breaker.allow(t0 + 500ms));       // the probe
  CHECK_FALSE(breaker.allow(t0 + 501ms)); // everyone else still bypasses
  CHECK_FALSE(breaker.allow(t0 + 600ms));
  CHECK(breaker.onSuccess() == Change::Closed);
  CHECK_FALSE(breaker.isOpen());
  CHECK(breaker.allow(t0 + 601ms));
}

TEST_CASE("a failed probe reopens the breaker for another cool-down") {
  CircuitBreaker breaker(2, 500ms);
  breaker.onFailure(t0);
  breaker.onFailure(t0);
  CHECK(breaker.allow(t0 + 500ms));
  CHECK(breaker.onFailure(t0 + 510ms) == Change::None); // still open: no new "opened"
  CHECK_FALSE(breaker.allow(t0 + 1000ms));
  CHECK(breaker.allow(t0 + 1010ms));
}

TEST_CASE("a probe that never reports is replaced after a cool-down") {
  CircuitBreaker breaker(1, 500ms);
  breaker.onFailure(t0);
  CHECK(breaker.allow(t0 + 500ms));
  CHECK_FALSE(breaker.allow(t0 + 900ms));
  CHECK(breaker.allow(t0 + 1000ms));
}
