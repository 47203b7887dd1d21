#include "support/catch.hpp"
#include "support/product.hpp"
#include "support/redis_server.hpp"
#include "support/sync.hpp"
#include "support/test_clients.hpp"
#include "support/test_redis.hpp"

#include <cacheaside/cacheaside.hpp>
#include <cacheaside/hiredis_client.hpp>

#include <atomic>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using cacheaside::CacheAside;
using cacheaside::HiredisClient;
using testsupport::Product;
using testsupport::product;
using namespace std::chrono_literals;

namespace {
long long pttl(cacheaside::RedisClient& client, const std::string& rk) {
  return testsupport::cmd(client, {"PTTL", rk}).integer;
}
bool exists(cacheaside::RedisClient& client, const std::string& rk) {
  return testsupport::cmd(client, {"EXISTS", rk}).integer == 1;
}
struct LoaderFailed : std::runtime_error {
  using std::runtime_error::runtime_error;
};
} // namespace

TEST_CASE("a miss loads once and the next call is a hit served from Redis") {
  CACHEASIDE_EACH_CLIENT(client);
  CacheAside<Product> cache(client, testsupport::cacheOptions("hit"));
  int loads = 0;
  const auto load = [&] {
    ++loads;
    return product(1);
  };
  CHECK(cache.getOrLoad("p:1", load) == product(1));
  CHECK(cache.getOrLoad("p:1", load) == product(1));
  CHECK(loads == 1);
  const auto s = cache.stats();
  CHECK(s.misses == 1);
  CHECK(s.hits == 1);
  CHECK(s.loads == 1);
  CHECK(s.redisErrors == 0);
}

TEST_CASE("a value written by one cache instance is a hit for another") {
  CACHEASIDE_EACH_CLIENT(client);
  const auto options = testsupport::cacheOptions("shared");
  CacheAside<Product> writer(client, options);
  CacheAside<Product> reader(client, options);
  writer.getOrLoad("p:2", [] { return product(2); });
  int loads = 0;
  CHECK(reader.getOrLoad("p:2", [&] {
    ++loads;
    return product(99);
  }) == product(2));
  CHECK(loads == 0);
}

TEST_CASE("invalidate deletes the value so the next call loads again") {
  CACHEASIDE_EACH_CLIENT(client);
  CacheAside<Product> cache(client, testsupport::cacheOptions("inv"));
  int version = 0;
  const auto load = [&] { return product(++version); };
  CHECK(cache.getOrLoad("p", load).id == 1);
  CHECK(cache.getOrLoad("p", load).id == 1);
  cache.invalidate("p");
  CHECK(cache.getOrLoad("p", load).id == 2);

  cache.getOrLoad("q", load);
  cache.getOrLoad("r", load);
  cache.invalidate({"p", "q"});
  const std::vector<std::string> keys{"r"};
  cache.invalidate(keys);
  CHECK_FALSE(cache.get("p"));
  CHECK_FALSE(cache.get("q"));
  CHECK_FALSE(cache.get("r"));
}

TEST_CASE("an empty optional from the loader is cached as not found for the negative TTL") {
  CACHEASIDE_EACH_CLIENT(client);
  auto options = testsupport::cacheOptions("neg");
  options.ttl = 600s;
  options.negativeTtl = 20s;
  options.ttlJitter = 0.1;
  CacheAside<Product> cache(client, options);
  int loads = 0;
  const auto lookup = [&]() -> std::optional<Product> {
    ++loads;
    return std::nullopt;
  };
  CHECK_FALSE(cache.getOrLoad("missing", lookup));
  CHECK_FALSE(cache.getOrLoad("missing", lookup));
  CHECK(loads == 1);
  const long long ttl = pttl(client, cacheaside::store::valueKey(options.keyNamespace, "missing"));
  CHECK(ttl > 0);
  CHECK(ttl <= 22000);
  CHECK(ttl >= 18000 - 2000);
  CHECK_FALSE(cache.get("missing"));
  // A loader that cannot say "not found" is told clearly instead of given a made-up value.
  CHECK_THROWS_AS(cache.getOrLoad("missing", [] { return product(1); }), cacheaside::EntryError);

  int found = 0;
  const auto present = [&]() -> std::optional<Product> {
    ++found;
    return product(5);
  };
  CHECK(cache.getOrLoad("present", present) == product(5));
  CHECK(cache.getOrLoad("present", present) == product(5));
  CHECK(found == 1);
}

TEST_CASE("stored TTLs lie within ttl x (1 +- jitter) and are spread out") {
  CACHEASIDE_EACH_CLIENT(client);
  auto options = testsupport::cacheOptions("jitter");
  options.ttl = 100s;
  options.ttlJitter = 0.2;
  CacheAside<int> cache(client, options);
  long long lo = 1LL << 60, hi = 0;
  for (int i = 0; i < 60; ++i) {
    const std::string key = "k" + std::to_string(i);
    cache.getOrLoad(key, [i] { return i; });
    const long long ttl = pttl(client, cacheaside::store::valueKey(options.keyNamespace, key));
    lo = std::min(lo, ttl);
    hi = std::max(hi, ttl);
  }
  CHECK(lo >= 80000 - 5000); // minus what passed since the write
  CHECK(hi <= 120000);
  CHECK(hi - lo > 1000); // 60 uniform draws over a 40 s range
}

TEST_CASE("a per-call TTL overrides the cache's") {
  CACHEASIDE_EACH_CLIENT(client);
  auto options = testsupport::cacheOptions("callttl");
  options.ttl = 600s;
  options.ttlJitter = 0;
  CacheAside<int> cache(client, options);
  cacheaside::CallOptions call;
  call.ttl = 5s;
  cache.getOrLoad(
      "short", [] { return 1; }, call);
  const long long ttl = pttl(client, cacheaside::store::valueKey(options.keyNamespace, "short"));
  CHECK(ttl > 0);
  CHECK(ttl <= 5000);
  call.ttl = 0s;
  CHECK_THROWS_AS(cache.getOrLoad(
                      "bad", [] { return 1; }, call),
                  std::invalid_argument);
}

TEST_CASE("get peeks without loading and set warms the cache") {
  CACHEASIDE_EACH_CLIENT(client);
  auto options = testsupport::cacheOptions("peek");
  CacheAside<Product> cache(client, options);
  CHECK_FALSE(cache.get("p"));
  CHECK(cache.set("p", product(3), 30s));
  CHECK(cache.get("p") == product(3));
  int loads = 0;
  CHECK(cache.getOrLoad("p", [&] {
    ++loads;
    return product(4);
  }) == product(3));
  CHECK(loads == 0);
  const long long ttl = pttl(client, cacheaside::store::valueKey(options.keyNamespace, "p"));
  CHECK(ttl > 0);
  CHECK(ttl <= 30000);
}

TEST_CASE("a loader's exception reaches the caller unchanged, is not cached, frees the lease") {
  CACHEASIDE_EACH_CLIENT(client);
  auto options = testsupport::cacheOptions("throw");
  CacheAside<Product> cache(client, options);
  CHECK_THROWS_AS(cache.getOrLoad("p", []() -> Product { throw LoaderFailed("db down"); }),
                  LoaderFailed);
  CHECK_FALSE(exists(client, cacheaside::store::valueKey(options.keyNamespace, "p")));
  // The next caller is not made to wait for a lease nobody holds.
  CHECK(cache.getOrLoad("p", [] { return product(1); }) == product(1));
  CHECK(cache.stats().leaseWaits == 0);
  CHECK(cache.stats().loads == 2);
}

TEST_CASE("a value larger than maxValueBytes is returned but not cached") {
  CACHEASIDE_EACH_CLIENT(client);
  auto options = testsupport::cacheOptions("big");
  options.maxValueBytes = 1000;
  CacheAside<std::string> cache(client, options);
  const std::string big(2000, 'x');
  CHECK(cache.getOrLoad("big", [&] { return big; }) == big);
  CHECK(cache.stats().oversizedValues == 1);
  CHECK_FALSE(exists(client, cacheaside::store::valueKey(options.keyNamespace, "big")));
  CHECK_FALSE(cache.set("big", big));
  CHECK(cache.stats().oversizedValues == 2);
  CHECK(cache.getOrLoad("small", [] { return std::string(1000, 'y'); }).size() == 1000);
  CHECK(exists(client, cacheaside::store::valueKey(options.keyNamespace, "small")));
}

TEST_CASE("callers that arrive during a load in one process share it and its result") {
  CACHEASIDE_EACH_CLIENT(client);
  CacheAside<Product> cache(client, testsupport::cacheOptions("coalesce"));
  constexpr int kThreads = 16;
  std::atomic<int> loads{0};
  std::atomic<int> correct{0};
  testsupport::Latch loading(1), release(1);
  auto call = [&] {
    const Product p = cache.getOrLoad("p", [&] {
      ++loads;
      loading.countDown();
      release.wait();
      return product(8);
    });
    if (p == product(8)) {
      ++correct;
    }
  };
  std::vector<std::thread> threads;
  threads.emplace_back(call);
  loading.wait(); // the first caller holds the lease and loads
  for (int i = 1; i < kThreads; ++i) {
    threads.emplace_back(call);
  }
  REQUIRE(testsupport::eventually([&] { return cache.stats().coalesced == kThreads - 1; }));
  release.countDown();
  for (auto& t : threads) {
    t.join();
  }
  CHECK(loads == 1);
  CHECK(correct == kThreads);
  const auto s = cache.stats();
  CHECK(s.misses == 1); // one lookup reached Redis
  CHECK(s.hits == 0);
  CHECK(cache.inFlight() == 0);
}

TEST_CASE("a loader exception is shared by coalesced callers and never cached") {
  CACHEASIDE_EACH_CLIENT(client);
  CacheAside<Product> cache(client, testsupport::cacheOptions("coalesce-throw"));
  constexpr int kThreads = 8;
  std::atomic<int> failures{0};
  testsupport::Latch loading(1), release(1);
  auto call = [&] {
    try {
      cache.getOrLoad("p", [&]() -> Product {
        loading.countDown();
        release.wait();
        throw LoaderFailed("db down");
      });
    } catch (const LoaderFailed&) {
      ++failures;
    }
  };
  std::vector<std::thread> threads;
  threads.emplace_back(call);
  loading.wait();
  for (int i = 1; i < kThreads; ++i) {
    threads.emplace_back(call);
  }
  REQUIRE(testsupport::eventually([&] { return cache.stats().coalesced == kThreads - 1; }));
  release.countDown();
  for (auto& t : threads) {
    t.join();
  }
  CHECK(failures == kThreads);
  CHECK(cache.stats().loads == 1);
  CHECK(cache.getOrLoad("p", [] { return product(2); }) == product(2));
}

TEST_CASE("Redis failures never reach getOrLoad's caller but invalidate reports them") {
  testsupport::RedisServer server({"--requirepass", "right"});
  auto unreachable = testsupport::clientOptions("127.0.0.1", testsupport::freeLoopbackPort());
  auto wrongPassword = testsupport::clientOptions(server.host(), server.port());
  wrongPassword.password = "wrong";
  for (const auto& options : {unreachable, wrongPassword}) {
    HiredisClient client(options);
    CacheAside<Product> cache(client, testsupport::cacheOptions("down"));
    int loads = 0;
    const auto load = [&] {
      ++loads;
      return product(1);
    };
    CHECK(cache.getOrLoad("p", load) == product(1));
    CHECK(cache.getOrLoad("p", load) == product(1));
    CHECK(loads == 2);
    CHECK_FALSE(cache.get("p"));
    CHECK_FALSE(cache.set("p", product(1)));
    CHECK(cache.stats().redisErrors == 4);
    CHECK_THROWS_AS(cache.invalidate("p"), cacheaside::ConnectionError);
    CHECK_THROWS_AS(cache.invalidate({"p", "q"}), cacheaside::ConnectionError);
    CHECK(cache.stats().redisErrors == 6);
  }
}

TEST_CASE("a Redis that refuses writes still serves hits, and misses load uncached") {
  testsupport::RedisServer server;
  HiredisClient client(testsupport::clientOptions(server.host(), server.port()));
  CacheAside<Product> cache(client, testsupport::cacheOptions("readonly"));
  cache.getOrLoad("cached", [] { return product(1); });
  // Writes now fail with OOM, as they would with MISCONF, NOREPLICAS or on a replica.
  REQUIRE(testsupport::cmd(client, {"CONFIG", "SET", "maxmemory-policy", "noeviction"}).str ==
          "OK");
  REQUIRE(testsupport::cmd(client, {"CONFIG", "SET", "maxmemory", "1"}).str == "OK");
  int loads = 0;
  const auto load = [&] {
    ++loads;
    return product(2);
  };
  CHECK(cache.getOrLoad("cached", load) == product(1));
  CHECK(loads == 0);
  CHECK(cache.getOrLoad("absent", load) == product(2));
  CHECK(cache.getOrLoad("absent", load) == product(2));
  CHECK(loads == 2);
  CHECK_FALSE(cache.breakerOpen()); // error replies are not an outage
}
