// getOrLoadMany against a real redis-server: round trips (counted at the client and by MONITOR),
// one loader call, duplicates, empty lists, large batches, loaders that throw or return extra
// keys, cached "not found", keys another caller is loading, and the near cache (hits without
// Redis, installs fenced by invalidations, waits woken by the fills' invalidations).
#include "support/catch.hpp"
#include "support/cmd.hpp"
#include "support/monitor.hpp"
#include "support/product.hpp"
#include "support/redis_server.hpp"
#include "support/sync.hpp"
#include "support/test_clients.hpp"
#include "support/test_redis.hpp"

#include <cacheaside/cacheaside.hpp>
#include <cacheaside/hiredis_client.hpp>
#include <cacheaside/near/hiredis_feed.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

using cacheaside::CacheAside;
using cacheaside::CacheOptions;
using cacheaside::Command;
using cacheaside::HiredisClient;
using cacheaside::Reply;
using testsupport::product;
using testsupport::Product;
using namespace std::chrono_literals;

namespace {
// Counts round trips (each command() or pipeline() call) and commands.
class CountingClient final : public cacheaside::RedisClient {
public:
  explicit CountingClient(cacheaside::RedisClient& inner) : inner_(inner) {}
  Reply command(const Command& command) override {
    ++trips;
    ++commands;
    return inner_.command(command);
  }
  std::vector<Reply> pipeline(const std::vector<Command>& batch) override {
    ++trips;
    commands += batch.size();
    largest = std::max<std::size_t>(largest, batch.size());
    std::vector<Reply> replies = inner_.pipeline(batch);
    if (afterPipeline) {
      std::exchange(afterPipeline, nullptr)(); // once: the batch's read has happened
    }
    return replies;
  }
  std::atomic<int> trips{0};
  std::atomic<std::size_t> commands{0};
  std::size_t largest = 0;
  std::function<void()> afterPipeline; // set by the test thread before the call it watches

private:
  cacheaside::RedisClient& inner_;
};

std::vector<std::string> keysOf(int from, int to) {
  std::vector<std::string> out;
  for (int i = from; i < to; ++i) {
    out.push_back("p" + std::to_string(i));
  }
  return out;
}
int idOf(const std::string& key) {
  return std::stoi(key.substr(1));
}

// A cache's client and an invalidation feed for its namespace (the near cache on).
struct Near {
  explicit Near(const std::string& prefix) : client(testsupport::clientOptions()) {
    options = testsupport::cacheOptions(prefix);
    cacheaside::near::HiredisFeedOptions f;
    f.redis = testsupport::clientOptions();
    f.namespaces = {options.keyNamespace};
    f.lagLimit = 2s; // a busy machine under sanitizers must not count as a lagging feed
    feed = std::make_shared<cacheaside::near::HiredisInvalidationFeed>(f);
    options.nearCache.feed = feed;
    REQUIRE(feed->waitUntilUp(20s));
  }
  HiredisClient client;
  std::shared_ptr<cacheaside::near::HiredisInvalidationFeed> feed;
  CacheOptions options;
};

// Listens to a feed beside the caches (after them: it hears of a key once they have): the Redis
// keys reported invalidated.
class Heard final : public cacheaside::near::InvalidationListener {
public:
  Heard(cacheaside::near::InvalidationFeed& feed, const std::string& keyNamespace) : feed_(feed) {
    feed_.attach(cacheaside::near::trackingPrefix(keyNamespace), *this);
  }
  ~Heard() override { feed_.detach(*this); }
  Heard(const Heard&) = delete;
  Heard& operator=(const Heard&) = delete;

  void invalidated(std::string_view redisKey) override {
    std::lock_guard<std::mutex> lock(mutex_);
    keys_.emplace(redisKey);
  }
  void flushed() override {}
  void up() override {}
  void down() override {}
  void confirmed(std::chrono::steady_clock::time_point) override {}

  bool has(const std::string& redisKey) {
    std::lock_guard<std::mutex> lock(mutex_);
    return keys_.count(redisKey) != 0;
  }
  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    keys_.clear();
  }

private:
  cacheaside::near::InvalidationFeed& feed_;
  std::mutex mutex_;
  std::set<std::string, std::less<>> keys_;
};

// A loader that returns every key asked for and records each call.
struct RecordingLoader {
  std::vector<std::vector<std::string>> calls;
  std::unordered_map<std::string, Product> operator()(const std::vector<std::string>& keys) {
    calls.push_back(keys);
    std::unordered_map<std::string, Product> out;
    for (const auto& k : keys) {
      out.emplace(k, product(idOf(k)));
    }
    return out;
  }
};
} // namespace

TEST_CASE("a batch of 100 keys with 10 misses costs 2 round trips and 1 loader call") {
  testsupport::RedisServer server;
  HiredisClient inner(testsupport::clientOptions(server.host(), server.port()));
  CountingClient client(inner);
  CacheAside<Product> cache(client, testsupport::cacheOptions("batch-rtt"));
  // Load the scripts and cache 90 of the 100 keys.
  RecordingLoader warm;
  cache.getOrLoadMany(keysOf(0, 90), warm);
  REQUIRE(warm.calls.size() == 1);
  testsupport::CommandMonitor monitor(server.host(), server.port());
  monitor.clientCommands();
  client.trips = 0;

  RecordingLoader loader;
  const auto keys = keysOf(0, 100);
  const std::vector<std::optional<Product>> got = cache.getOrLoadMany(keys, loader);
  CHECK(client.trips == 2);
  REQUIRE(loader.calls.size() == 1);
  CHECK(loader.calls[0] == keysOf(90, 100));
  REQUIRE(got.size() == 100);
  for (int i = 0; i < 100; ++i) {
    CHECK(got[static_cast<std::size_t>(i)] == product(i));
  }
  // As the server saw it: one lookup per key, one fill per miss, nothing else.
  std::map<std::string, int> verbs;
  for (const auto& line : monitor.clientCommands()) {
    const auto open = line.find("] \"");
    ++verbs[line.substr(open + 3, line.find('"', open + 3) - open - 3)];
  }
  const std::size_t sets = static_cast<std::size_t>(verbs["SET"] + verbs["EVALSHA"] - 10);
  CHECK(sets == 100);
  CHECK(verbs["EVALSHA"] >= 10);

  // All hits now: one round trip, no loader call.
  client.trips = 0;
  RecordingLoader none;
  CHECK(cache.getOrLoadMany(keys, none) == got);
  CHECK(client.trips == 1);
  CHECK(none.calls.empty());
}

TEST_CASE("a batch answers duplicate keys at every position and loads them once") {
  CACHEASIDE_EACH_CLIENT(client);
  CacheAside<Product> cache(client, testsupport::cacheOptions("batch-dup"));
  RecordingLoader loader;
  const std::vector<std::string> keys{"p1", "p2", "p1", "p3", "p2"};
  const auto got = cache.getOrLoadMany(keys, loader);
  REQUIRE(loader.calls.size() == 1);
  CHECK(loader.calls[0] == std::vector<std::string>{"p1", "p2", "p3"});
  REQUIRE(got.size() == 5);
  CHECK(got[0] == product(1));
  CHECK(got[1] == product(2));
  CHECK(got[2] == product(1));
  CHECK(got[3] == product(3));
  CHECK(got[4] == product(2));
}

TEST_CASE("an empty batch sends nothing and calls no loader") {
  HiredisClient inner(testsupport::clientOptions());
  CountingClient client(inner);
  CacheAside<Product> cache(client, testsupport::cacheOptions("batch-empty"));
  RecordingLoader loader;
  CHECK(cache.getOrLoadMany(std::vector<std::string>{}, loader).empty());
  CHECK(client.trips == 0);
  CHECK(loader.calls.empty());
  CHECK_THROWS_AS(cache.getOrLoadMany(std::vector<std::string>{"a", ""}, loader),
                  std::invalid_argument);
  CHECK(client.trips == 0);
}

TEST_CASE("a batch of 10000 keys is sent in bounded pipelines with one loader call") {
  HiredisClient inner(testsupport::clientOptions());
  CountingClient client(inner);
  CacheAside<Product> cache(client, testsupport::cacheOptions("batch-large"));
  const auto keys = keysOf(0, 10000);
  RecordingLoader loader;
  const auto got = cache.getOrLoadMany(keys, loader);
  REQUIRE(loader.calls.size() == 1);
  CHECK(loader.calls[0].size() == 10000);
  CHECK(client.largest <= 1024);
  CHECK(client.largest >= 512);
  REQUIRE(got.size() == 10000);
  CHECK(got[9999] == product(9999));
  RecordingLoader none;
  const auto again = cache.getOrLoadMany(keys, none);
  CHECK(none.calls.empty());
  CHECK(again == got);
  CHECK(cache.stats().hits == 10000);
}

TEST_CASE("a batch loader that throws gives its leases up and the call rethrows") {
  CACHEASIDE_EACH_CLIENT(client);
  const auto options = testsupport::cacheOptions("batch-throw");
  CacheAside<Product> cache(client, options);
  cache.getOrLoad("p1", [] { return product(1); });
  CHECK_THROWS_WITH(
      cache.getOrLoadMany(
          keysOf(0, 3),
          [](const std::vector<std::string>&) -> std::unordered_map<std::string, Product> {
            throw std::runtime_error("database down");
          }),
      "database down");
  // No lease is left: the keys are empty, and the next call loads them at once.
  CHECK(
      testsupport::cmd(client, {"EXISTS", cacheaside::store::valueKey(options.keyNamespace, "p0")})
          .integer == 0);
  RecordingLoader loader;
  const auto got = cache.getOrLoadMany(keysOf(0, 3), loader);
  REQUIRE(loader.calls.size() == 1);
  CHECK(loader.calls[0] == std::vector<std::string>{"p0", "p2"});
  CHECK(got[1] == product(1));
  CHECK(cache.stats().waitTimeouts == 0);
}

TEST_CASE("a batch ignores keys the loader returns unasked and caches the missing as not found") {
  CACHEASIDE_EACH_CLIENT(client);
  const auto options = testsupport::cacheOptions("batch-missing");
  CacheAside<Product> cache(client, options);
  int calls = 0;
  auto loader = [&](const std::vector<std::string>& keys) {
    ++calls;
    std::map<std::string, std::optional<Product>> out;
    for (const auto& k : keys) {
      if (k == "p1") {
        out.emplace(k, product(1));
      } else if (k == "p3") {
        out.emplace(k, std::nullopt); // said "not found"
      }
    }
    out.emplace("unasked", product(99));
    return out;
  };
  const auto got = cache.getOrLoadMany(keysOf(1, 4), loader);
  CHECK(calls == 1);
  CHECK(got == std::vector<std::optional<Product>>{product(1), std::nullopt, std::nullopt});
  CHECK(testsupport::cmd(client,
                         {"EXISTS", cacheaside::store::valueKey(options.keyNamespace, "unasked")})
            .integer == 0);
  // p2 (not returned) and p3 (returned empty) are cached "not found": no second loader call.
  CHECK(cache.getOrLoadMany(keysOf(1, 4), loader) == got);
  CHECK(calls == 1);
  CHECK(cache.getOrLoad("p2", [] { return std::optional<Product>(product(2)); }) == std::nullopt);

  // With T values, missing keys are not cached: the next call asks for them again.
  int plain = 0;
  auto partial = [&](const std::vector<std::string>& keys) {
    ++plain;
    std::unordered_map<std::string, Product> out;
    for (const auto& k : keys) {
      if (k != "q2") {
        out.emplace(k, product(7));
      }
    }
    return out;
  };
  const std::vector<std::string> qs{"q1", "q2"};
  CHECK(cache.getOrLoadMany(qs, partial) ==
        std::vector<std::optional<Product>>{product(7), std::nullopt});
  CHECK(cache.getOrLoadMany(qs, partial) ==
        std::vector<std::optional<Product>>{product(7), std::nullopt});
  CHECK(plain == 2);
}

TEST_CASE("a batch waits together for the keys another cache is loading") {
  CACHEASIDE_EACH_CLIENT(client);
  const auto options = testsupport::cacheOptions("batch-wait");
  CacheAside<Product> other(client, options), cache(client, options);
  testsupport::Latch loading(2), release(1);
  std::vector<std::thread> holders;
  for (const int id : {1, 2}) {
    holders.emplace_back([&, id] {
      other.getOrLoad("p" + std::to_string(id), [&, id] {
        loading.countDown();
        release.wait();
        return product(100 + id);
      });
    });
  }
  loading.wait();
  RecordingLoader loader;
  std::vector<std::optional<Product>> got;
  std::thread batch([&] { got = cache.getOrLoadMany(keysOf(0, 4), loader); });
  REQUIRE(testsupport::eventually([&] { return cache.stats().leaseWaits == 2; }));
  release.countDown();
  batch.join();
  for (auto& t : holders) {
    t.join();
  }
  REQUIRE(loader.calls.size() == 1);
  CHECK(loader.calls[0] == std::vector<std::string>{"p0", "p3"});
  CHECK(got ==
        std::vector<std::optional<Product>>{product(0), product(101), product(102), product(3)});
}

TEST_CASE("a batch answers near hits without Redis and sends only the other keys") {
  Near n("batch-near");
  CountingClient client(n.client);
  CacheAside<Product> cache(client, n.options);
  RecordingLoader loader;
  const auto keys = keysOf(0, 20);
  std::vector<std::optional<Product>> expected;
  for (int i = 0; i < 20; ++i) {
    expected.emplace_back(product(i));
  }
  REQUIRE(cache.getOrLoadMany(keys, loader) == expected);
  // Redis hits install; an install the fill's own invalidation overtook is refused, so read
  // until every key is held.
  REQUIRE(testsupport::eventually([&] {
    return cache.getOrLoadMany(keys, loader) == expected && cache.nearStats().entries == 20;
  }));
  const int trips = client.trips;
  const auto nearHits = cache.nearStats().hits;
  CHECK(cache.getOrLoadMany(keys, loader) == expected);
  CHECK(client.trips == trips); // Redis was not asked
  CHECK(cache.nearStats().hits == nearHits + 20);

  // Ten held, ten missing: the pipeline carries the missing ones only.
  client.largest = 0;
  const auto got = cache.getOrLoadMany(keysOf(10, 30), loader);
  CHECK(client.trips == trips + 2);
  CHECK(client.largest == 10);
  REQUIRE(loader.calls.size() == 2);
  CHECK(loader.calls[1] == keysOf(20, 30));
  REQUIRE(got.size() == 20);
  CHECK(got[0] == product(10));
  CHECK(got[19] == product(29));
  CHECK(cache.nearStats().hits == nearHits + 30);

  // A call that names tags reads Redis, as single calls do.
  cacheaside::CallOptions tagged;
  tagged.tags = {"books"};
  const auto tripsBefore = client.trips.load();
  cache.getOrLoadMany(keysOf(0, 5), loader, tagged);
  CHECK(client.trips > tripsBefore);
  CHECK(cache.nearStats().hits == nearHits + 30);
}

TEST_CASE("a batch does not install a value whose key was invalidated during its read") {
  Near n("batch-fenced");
  Heard heard(*n.feed, n.options.keyNamespace);
  CacheAside<Product> writer(n.client, [&] { // another process, without a near cache
    CacheOptions o = n.options;
    o.nearCache.feed.reset();
    return o;
  }());
  RecordingLoader first;
  writer.getOrLoadMany(keysOf(0, 3), first);
  // The feed reports in the order Redis wrote: once it reports this write, it has reported the
  // fills before it.
  const std::string sentinel = cacheaside::store::valueKey(n.options.keyNamespace, "sentinel");
  testsupport::cmd(n.client, {"SET", sentinel, "x"});
  REQUIRE(testsupport::eventually([&] { return heard.has(sentinel); }));
  heard.clear();

  CountingClient client(n.client);
  CacheAside<Product> cache(client, n.options);
  // On Redis 6 the first lookup learns that the server needs the scripted one: not this read.
  RecordingLoader warm;
  cache.getOrLoadMany(std::vector<std::string>{"p99"}, warm);
  const std::string p1 = cacheaside::store::valueKey(n.options.keyNamespace, "p1");
  client.afterPipeline = [&] { // between the batch's read and its install, p1 is deleted
    testsupport::cmd(n.client, {"DEL", p1});
    REQUIRE(testsupport::eventually([&] { return heard.has(p1); }));
  };
  RecordingLoader none;
  const auto got = cache.getOrLoadMany(keysOf(0, 3), none);
  CHECK(none.calls.empty());
  CHECK(got == std::vector<std::optional<Product>>{product(0), product(1), product(2)});
  CHECK(cache.nearStats().refused >= 1);

  // p0 and p2 are held; p1 is read from Redis again, where it is gone: loaded anew.
  int loads = 0;
  auto reload = [&](const std::vector<std::string>& keys) {
    ++loads;
    CHECK(keys == std::vector<std::string>{"p1"});
    return std::unordered_map<std::string, Product>{{"p1", product(101)}};
  };
  const auto nearHits = cache.nearStats().hits;
  CHECK(cache.getOrLoadMany(keysOf(0, 3), reload) ==
        std::vector<std::optional<Product>>{product(0), product(101), product(2)});
  CHECK(loads == 1);
  CHECK(cache.nearStats().hits == nearHits + 2);
}

TEST_CASE("a batch waiting for keys another cache loads is woken by their fills") {
  Near n("batch-woken");
  CacheOptions o = n.options;
  o.pollInitial = 10s; // a batch that polled would wait this long
  o.pollMax = 10s;
  o.waitBudget = 30s;
  CacheAside<Product> other(n.client, o), cache(n.client, o); // no in-process coalescing
  testsupport::Latch loading(2), release(1);
  std::vector<std::thread> holders;
  for (const int id : {1, 2}) {
    holders.emplace_back([&, id] {
      other.getOrLoad("p" + std::to_string(id), [&, id] {
        loading.countDown();
        release.wait();
        return product(100 + id);
      });
    });
  }
  loading.wait();
  RecordingLoader loader;
  std::vector<std::optional<Product>> got;
  std::thread batch([&] { got = cache.getOrLoadMany(keysOf(0, 4), loader); });
  REQUIRE(testsupport::eventually([&] { return cache.stats().leaseWaits == 2; }));
  const auto released = std::chrono::steady_clock::now();
  release.countDown();
  batch.join();
  const auto took = std::chrono::steady_clock::now() - released;
  for (auto& t : holders) {
    t.join();
  }
  CHECK(took < 5s); // half the poll it did not wait for
  REQUIRE(loader.calls.size() == 1);
  CHECK(loader.calls[0] == std::vector<std::string>{"p0", "p3"});
  CHECK(got ==
        std::vector<std::optional<Product>>{product(0), product(101), product(102), product(3)});
}

TEST_CASE("a batch with a near cache whose feed is down waits by polling") {
  testsupport::RedisServer feedServer; // the feed's own server, stopped below
  CacheOptions o = testsupport::cacheOptions("batch-feed-down");
  cacheaside::near::HiredisFeedOptions f;
  f.redis = testsupport::clientOptions(feedServer.host(), feedServer.port());
  f.namespaces = {o.keyNamespace};
  auto feed = std::make_shared<cacheaside::near::HiredisInvalidationFeed>(f);
  REQUIRE(feed->waitUntilUp(20s));
  o.nearCache.feed = feed;
  o.pollInitial = 5ms;
  o.pollMax = 20ms;
  o.waitBudget = 30s;
  HiredisClient client(testsupport::clientOptions());
  CacheAside<Product> other(client, o), cache(client, o);
  feedServer.stop();
  REQUIRE(testsupport::eventually([&] { return cache.nearStats().bypassed; }));
  testsupport::Latch loading(1), release(1);
  std::thread holder([&] {
    other.getOrLoad("p1", [&] {
      loading.countDown();
      release.wait();
      return product(101);
    });
  });
  loading.wait();
  RecordingLoader loader;
  std::vector<std::optional<Product>> got;
  std::thread batch([&] { got = cache.getOrLoadMany(keysOf(0, 2), loader); });
  REQUIRE(testsupport::eventually([&] { return cache.stats().leaseWaits == 1; }));
  release.countDown();
  batch.join();
  holder.join();
  CHECK(got == std::vector<std::optional<Product>>{product(0), product(101)});
  CHECK(loader.calls == std::vector<std::vector<std::string>>{{"p0"}});
  CHECK(cache.nearStats().hits == 0);
}
