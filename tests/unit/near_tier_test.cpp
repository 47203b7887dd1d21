// NearTier against a scripted feed (a pure unit test; tests/integration/near_cache_test.cpp and
// tests/near_coherence run it against redis-server).
#include "support/catch.hpp"

#include <cacheaside/near/metrics.hpp>
#include <cacheaside/near/tier.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

using cacheaside::NearCacheOptions;
using cacheaside::near::InvalidationFeed;
using cacheaside::near::InvalidationListener;
using cacheaside::near::NearTier;
using namespace std::chrono_literals;

namespace {
struct ScriptedFeed final : InvalidationFeed {
  void attach(std::string_view prefix, InvalidationListener& l) override {
    if (prefix != "ns:{") {
      throw std::invalid_argument("prefix");
    }
    listener = &l;
  }
  void detach(InvalidationListener&) override { listener = nullptr; }
  void upNow() {
    listener->up();
    listener->confirmed(std::chrono::steady_clock::now());
  }
  InvalidationListener* listener = nullptr;
};

struct Fixture {
  Fixture() {
    options.feed = feed;
    options.maxTtl = 1h;
  }
  std::shared_ptr<ScriptedFeed> feed = std::make_shared<ScriptedFeed>();
  NearCacheOptions options;
};

void put(NearTier<std::string>& tier, const std::string& key, const std::string& value) {
  tier.offer(key, tier.ticket(key), value, value.size(), 1h);
}
} // namespace

TEST_CASE("near tier: bypassed until the feed is up, then serves what a hit offered") {
  Fixture f;
  NearTier<std::string> tier(f.options, "ns");
  REQUIRE(f.feed->listener == &tier);
  put(tier, "ns:{a}", "1");
  CHECK(tier.find("ns:{a}") == nullptr); // down: nothing is installed or served
  CHECK(tier.stats().bypassed);
  f.feed->upNow();
  put(tier, "ns:{a}", "1");
  const auto v = tier.find("ns:{a}");
  REQUIRE(v != nullptr);
  CHECK(*v == "1");
  CHECK(tier.stats().hits == 1);
  CHECK(tier.stats().installs == 1);
}

TEST_CASE("near tier: an invalidation during the read refuses its install") {
  Fixture f;
  NearTier<std::string> tier(f.options, "ns");
  f.feed->upNow();
  const auto ticket = tier.ticket("ns:{a}"); // taken before the Redis read
  f.feed->listener->invalidated("ns:{a}");   // arrives while the reply is on its way
  tier.offer("ns:{a}", ticket, "old", 3, 1h);
  CHECK(tier.find("ns:{a}") == nullptr);
  CHECK(tier.stats().refused == 1);
  CHECK(tier.stats().invalidations == 1);
}

TEST_CASE("near tier: a flush, a lost feed and a silent feed all stop serving") {
  Fixture f;
  NearTier<std::string> tier(f.options, "ns");
  f.feed->upNow();
  put(tier, "ns:{a}", "1");
  f.feed->listener->flushed();
  CHECK(tier.find("ns:{a}") == nullptr);

  put(tier, "ns:{a}", "1");
  const auto ticket = tier.ticket("ns:{b}");
  f.feed->listener->down();
  CHECK(tier.find("ns:{a}") == nullptr);
  f.feed->upNow();
  CHECK(tier.find("ns:{a}") == nullptr); // cleared on the way down and up
  tier.offer("ns:{b}", ticket, "read while down", 1, 1h);
  CHECK(tier.find("ns:{b}") == nullptr);

  put(tier, "ns:{a}", "1");
  REQUIRE(tier.find("ns:{a}") != nullptr);
  f.feed->listener->confirmed(std::chrono::steady_clock::now() - 10s); // heartbeat long ago
  CHECK(tier.find("ns:{a}") == nullptr);
  CHECK(tier.stats().silentMisses == 1);
  CHECK(tier.stats().flushes == 2);
}

TEST_CASE("near tier: a value is not held past the ttl it was offered with") {
  Fixture f;
  NearTier<std::string> tier(f.options, "ns");
  f.feed->upNow();
  tier.offer("ns:{a}", tier.ticket("ns:{a}"), "v", 1, 0ms);
  tier.offer("ns:{b}", tier.ticket("ns:{b}"), "v", 1, -5ms);
  CHECK(tier.stats().entries == 0);
  f.options.maxTtl = 1ms;
  NearTier<std::string> capped(f.options, "ns");
  f.feed->upNow();
  capped.offer("ns:{a}", capped.ticket("ns:{a}"), "v", 1, 1h);
  const auto deadline = std::chrono::steady_clock::now() + 2ms;
  while (std::chrono::steady_clock::now() < deadline) {
  }
  CHECK(capped.find("ns:{a}") == nullptr); // capped by maxTtl
}

TEST_CASE("near tier: Prometheus text names every near counter") {
  Fixture f;
  NearTier<std::string> tier(f.options, "ns");
  f.feed->upNow();
  put(tier, "ns:{a}", "1");
  tier.find("ns:{a}");
  const std::string text = cacheaside::metrics::nearPrometheusText(tier.stats(), "c\"1");
  CHECK(text.find("cacheaside_near_hits_total{cache=\"c\\\"1\"} 1\n") != std::string::npos);
  CHECK(text.find("cacheaside_near_evictions_total") != std::string::npos);
  CHECK(text.find("cacheaside_near_invalidations_total") != std::string::npos);
  CHECK(text.find("cacheaside_near_flushes_total") != std::string::npos);
  CHECK(text.find("# TYPE cacheaside_near_entries gauge") != std::string::npos);
}

TEST_CASE("near tier: a wait for several keys ends at the first invalidation of one of them") {
  Fixture f;
  NearTier<std::string> tier(f.options, "ns");
  f.feed->upNow();
  using Marks = std::vector<std::pair<std::string_view, std::uint64_t>>;
  const auto marks = [&] {
    return Marks{{"ns:{a}", tier.ticket("ns:{a}").sequence},
                 {"ns:{b}", tier.ticket("ns:{b}").sequence}};
  };
  using Clock = std::chrono::steady_clock;

  // Nothing moves: the whole pause, even when another key is invalidated.
  const Marks quiet = marks();
  auto started = Clock::now();
  f.feed->listener->invalidated("ns:{c}");
  tier.waitAny(quiet, 50ms);
  CHECK(Clock::now() - started >= 50ms);

  // b moves while it waits (or before: the marks tell it either way).
  const Marks waiting = marks();
  started = Clock::now();
  std::thread waiter([&] { tier.waitAny(waiting, 30s); });
  f.feed->listener->invalidated("ns:{b}");
  waiter.join();
  CHECK(Clock::now() - started < 15s);
}
