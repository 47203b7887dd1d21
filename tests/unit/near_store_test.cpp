#include "support/catch.hpp"
#include "support/sync.hpp"

#include <cacheaside/near/store.hpp>

#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using cacheaside::near::NearStore;
using cacheaside::near::NearStoreOptions;
using Store = NearStore<std::string>;

namespace {
NearStoreOptions bounds(std::size_t entries, std::size_t bytes, std::size_t shards = 1) {
  NearStoreOptions o;
  o.maxEntries = entries;
  o.maxBytes = bytes;
  o.shards = shards;
  return o;
}
const Store::Clock::time_point kNow = Store::Clock::now();
const Store::Clock::time_point kLater = kNow + std::chrono::hours(1);

bool put(Store& s, const std::string& key, const std::string& value, std::size_t bytes = 10) {
  return s.install(key, s.ticket(key), std::make_shared<const std::string>(value), bytes, kLater);
}
} // namespace

TEST_CASE("near store: an installed value is found, shared, until it expires") {
  Store s(bounds(100, 1 << 20));
  CHECK(s.find("a", kNow) == nullptr);
  REQUIRE(put(s, "a", "one"));
  const auto v = s.find("a", kNow);
  REQUIRE(v != nullptr);
  CHECK(*v == "one");
  CHECK(s.find("a", kNow).get() == v.get()); // the same object, not a copy
  CHECK(s.find("a", kLater) == nullptr);     // expired
  CHECK(s.counters().entries == 1);
}

TEST_CASE("near store: erase and clear remove, and refuse installs of older tickets") {
  Store s(bounds(100, 1 << 20, 4));
  const auto before = s.ticket("k");
  s.erase("k"); // an invalidation arrives while the read is in flight
  CHECK_FALSE(s.install("k", before, std::make_shared<const std::string>("old"), 1, kLater));
  CHECK(s.find("k", kNow) == nullptr);
  CHECK(s.counters().refused == 1);
  REQUIRE(put(s, "k", "new"));
  const auto beforeClear = s.ticket("other");
  s.clear();
  CHECK(s.find("k", kNow) == nullptr);
  CHECK_FALSE(s.install("other", beforeClear, std::make_shared<const std::string>("x"), 1, kLater));
  CHECK(s.counters().entries == 0);
  CHECK(s.counters().bytes == 0);
  REQUIRE(put(s, "k", "again"));
  s.erase("k");
  CHECK(s.find("k", kNow) == nullptr);
}

TEST_CASE("near store: stays within maxEntries and maxBytes") {
  Store s(bounds(50, 1 << 20));
  for (int i = 0; i < 500; ++i) {
    put(s, "k" + std::to_string(i), "v");
  }
  CHECK(s.counters().entries == 50);
  CHECK(s.counters().evictions == 450);

  const std::size_t charge = 1000 + 4 + Store::kEntryOverhead; // keys k100..k199
  Store b(bounds(1000, 10 * charge));
  for (int i = 100; i < 200; ++i) {
    put(b, "k" + std::to_string(i), "v", 1000);
  }
  CHECK(b.counters().bytes <= 10 * charge);
  CHECK(b.counters().entries == 10);
  CHECK_FALSE(put(b, "big", "v", 20 * charge)); // larger than the bound: not held
  CHECK(b.find("big", kNow) == nullptr);
}

TEST_CASE("near store: S3-FIFO keeps a key read again through a scan of one-hit keys") {
  Store s(bounds(100, 1 << 20));
  REQUIRE(put(s, "hot", "h"));
  REQUIRE(s.find("hot", kNow) != nullptr); // read again while in the small queue
  for (int i = 0; i < 1000; ++i) {
    put(s, "scan" + std::to_string(i), "s");
    if (i % 50 == 0) {
      s.find("hot", kNow);
    }
  }
  CHECK(s.find("hot", kNow) != nullptr);
  CHECK(s.find("scan0", kNow) == nullptr);
}

TEST_CASE("near store: a key evicted unread comes back into the main queue") {
  Store s(bounds(10, 1 << 20));
  REQUIRE(put(s, "g", "1"));
  for (int i = 0; i < 12; ++i) {
    put(s, "x" + std::to_string(i), "x"); // evicts g unread: a ghost, still remembered
  }
  REQUIRE(s.find("g", kNow) == nullptr);
  REQUIRE(put(s, "g", "2")); // remembered: straight to main
  for (int i = 20; i < 40; ++i) {
    put(s, "x" + std::to_string(i), "x");
  }
  const auto v = s.find("g", kNow);
  REQUIRE(v != nullptr);
  CHECK(*v == "2");
}

TEST_CASE("near store: bad bounds are refused") {
  CHECK_THROWS_AS(Store(bounds(0, 1)), std::invalid_argument);
  CHECK_THROWS_AS(Store(bounds(1, 0)), std::invalid_argument);
  CHECK_THROWS_AS(Store(bounds(1, 1, 0)), std::invalid_argument);
  CHECK_THROWS_AS(Store(bounds(1, 1, 257)), std::invalid_argument);
}

TEST_CASE("near store: concurrent readers, writers and invalidations keep the bounds") {
  Store s(bounds(64, 1 << 20, 8));
  constexpr int kThreads = 4;
  testsupport::Latch start(kThreads);
  std::atomic<long> found{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      start.arriveAndWait();
      for (int i = 0; i < 20000; ++i) {
        const std::string key = "k" + std::to_string((i * 7 + t) % 200);
        if (auto v = s.find(key, kNow)) {
          found.fetch_add(*v == key ? 1 : 1000000);
        } else if (i % 5 == 0) {
          s.erase(key);
        } else {
          put(s, key, key);
        }
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  CHECK(found.load() < 1000000); // every value found is its own key's
  CHECK(s.counters().entries <= 64);
}
