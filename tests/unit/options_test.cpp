#include "support/catch.hpp"

#include <cacheaside/options.hpp>

#include <chrono>
#include <stdexcept>

using cacheaside::CacheOptions;
using namespace std::chrono_literals;

TEST_CASE("the default options are valid and finite") {
  const CacheOptions o;
  CHECK_NOTHROW(o.validate());
  CHECK(o.ttl > 0ms);
  CHECK(o.lockTtl > 0ms);
  CHECK(o.waitBudget < o.ttl);
  CHECK(o.maxValueBytes > 0);
}

TEST_CASE("each out-of-range option is rejected by name") {
  const auto rejects = [](auto mutate, const char* field) {
    CacheOptions o;
    mutate(o);
    try {
      o.validate();
      FAIL("accepted a bad " << field);
    } catch (const std::invalid_argument& e) {
      CHECK(std::string(e.what()).find(field) != std::string::npos);
    }
  };
  rejects([](CacheOptions& o) { o.ttl = 0ms; }, "ttl");
  rejects([](CacheOptions& o) { o.ttlJitter = 1.0; }, "ttlJitter");
  rejects([](CacheOptions& o) { o.ttlJitter = -0.1; }, "ttlJitter");
  rejects([](CacheOptions& o) { o.negativeTtl = -1ms; }, "negativeTtl");
  rejects([](CacheOptions& o) { o.lockTtl = 0ms; }, "lockTtl");
  rejects([](CacheOptions& o) { o.waitBudget = -1ms; }, "waitBudget");
  rejects([](CacheOptions& o) { o.pollInitial = 0ms; }, "pollInitial");
  rejects([](CacheOptions& o) { o.pollMax = o.pollInitial - 1ms; }, "pollInitial");
  rejects([](CacheOptions& o) { o.maxValueBytes = 0; }, "maxValueBytes");
}
