// Tags against a real redis-server: invalidateTag is one command, a tagged hit one round trip,
// and a load that overlapped invalidateTag (two cache instances stand for two processes) is never
// read as fresh.
#include "support/catch.hpp"
#include "support/monitor.hpp"
#include "support/product.hpp"
#include "support/redis_server.hpp"
#include "support/sync.hpp"
#include "support/test_clients.hpp"
#include "support/test_redis.hpp"

#include <cacheaside/cacheaside.hpp>
#include <cacheaside/hiredis_client.hpp>

#include <atomic>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

using cacheaside::CacheAside;
using cacheaside::CallOptions;
using cacheaside::Command;
using cacheaside::HiredisClient;
using cacheaside::Reply;
using testsupport::product;
using testsupport::Product;

namespace {
CallOptions tagged(std::vector<std::string> tags) {
  CallOptions call;
  call.tags = std::move(tags);
  return call;
}

class CountingClient final : public cacheaside::RedisClient {
public:
  explicit CountingClient(cacheaside::RedisClient& inner) : inner_(inner) {}
  Reply command(const Command& command) override {
    ++trips;
    return inner_.command(command);
  }
  std::vector<Reply> pipeline(const std::vector<Command>& batch) override {
    ++trips;
    return inner_.pipeline(batch);
  }
  std::atomic<int> trips{0};

private:
  cacheaside::RedisClient& inner_;
};
} // namespace

TEST_CASE("invalidateTag invalidates every value carrying the tag with one command") {
  testsupport::RedisServer server;
  HiredisClient inner(testsupport::clientOptions(server.host(), server.port()));
  CountingClient client(inner);
  CacheAside<Product> cache(client, testsupport::cacheOptions("tags"));
  const auto books = tagged({"category:books"});
  int loads = 0;
  auto load = [&](int id) {
    return [&loads, id] {
      ++loads;
      return product(id);
    };
  };
  for (int id = 0; id < 50; ++id) {
    cache.getOrLoad("p" + std::to_string(id), load(id), books);
  }
  cache.getOrLoad("other", load(99), tagged({"category:music"}));
  CHECK(loads == 51);

  // A tagged hit: one round trip, no loader call.
  client.trips = 0;
  CHECK(cache.getOrLoad("p7", load(7), books) == product(7));
  CHECK(client.trips == 1);
  CHECK(loads == 51);

  testsupport::CommandMonitor monitor(server.host(), server.port());
  monitor.clientCommands();
  cache.invalidateTag("category:books");
  const auto sent = monitor.clientCommands();
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].find("\"SET\"") != std::string::npos);

  for (int id = 0; id < 50; ++id) {
    CHECK(cache.getOrLoad("p" + std::to_string(id), load(id + 1000), books) == product(id + 1000));
  }
  CHECK(loads == 101);
  CHECK(cache.getOrLoad("other", load(0), tagged({"category:music"})) == product(99));
  CHECK(loads == 101);
  // A value with two tags goes with either.
  cache.getOrLoad("both", load(5), tagged({"category:books", "featured"}));
  cache.invalidateTag("featured");
  CHECK(cache.getOrLoad("both", load(6), tagged({"category:books", "featured"})) == product(6));
}

TEST_CASE("a load that overlapped invalidateTag in another process is never read as fresh") {
  CACHEASIDE_EACH_CLIENT(client);
  const auto options = testsupport::cacheOptions("tags-race");
  CacheAside<Product> writerSide(client, options), readerSide(client, options);
  const auto books = tagged({"category:books"});
  testsupport::Latch loading(1), invalidated(1);
  std::optional<Product> returned;
  std::thread reader([&] {
    returned = readerSide.getOrLoad(
        "p1",
        [&] {
          loading.countDown();
          invalidated.wait();
          return product(1); // read before the write committed
        },
        books);
  });
  loading.wait();
  writerSide.invalidateTag("category:books"); // the write committed; its invalidation lands
  invalidated.countDown();
  reader.join();
  CHECK(returned == product(1)); // its own caller gets it
  // It was stored, but stamped with the generation from before: every reader reloads it.
  int loads = 0;
  const auto fresh = [&] {
    ++loads;
    return product(2);
  };
  CHECK(writerSide.getOrLoad("p1", fresh, books) == product(2));
  CHECK(readerSide.getOrLoad("p1", fresh, books) == product(2));
  CHECK(loads == 1);
}

TEST_CASE("callers that joined a load overlapping invalidateTag look again") {
  CACHEASIDE_EACH_CLIENT(client);
  const auto options = testsupport::cacheOptions("tags-join");
  CacheAside<Product> writerSide(client, options), cache(client, options);
  const auto books = tagged({"category:books"});
  testsupport::Latch loading(1), joined(1);
  std::atomic<int> version{1};
  auto load = [&] {
    const int v = version.load();
    if (v == 1) {
      loading.countDown();
      joined.wait();
    }
    return product(v);
  };
  std::optional<Product> first, second;
  std::thread leader([&] { first = cache.getOrLoad("p", load, books); });
  loading.wait();
  std::thread follower([&] { second = cache.getOrLoad("p", load, books); });
  REQUIRE(testsupport::eventually([&] { return cache.stats().coalesced == 1; }));
  version = 2; // the write commits, then its tag is invalidated, while the load runs
  writerSide.invalidateTag("category:books");
  joined.countDown();
  leader.join();
  follower.join();
  CHECK(first == product(1));
  CHECK(second == product(2));
}

TEST_CASE("tags: records without a call's tags are reloaded once and untagged calls skip checks") {
  CACHEASIDE_EACH_CLIENT(client);
  CacheAside<Product> cache(client, testsupport::cacheOptions("tags-old"));
  int loads = 0;
  auto load = [&] {
    ++loads;
    return product(loads);
  };
  cache.getOrLoad("p", load); // an untagged (or older library's) record
  CHECK(cache.getOrLoad("p", load, tagged({"t"})) == product(2));
  CHECK(cache.getOrLoad("p", load, tagged({"t"})) == product(2));
  cache.invalidateTag("t");
  CHECK(cache.getOrLoad("p", load) == product(2)); // names no tag: no check
  CHECK(cache.get("p") == product(2));
  CHECK(cache.getOrLoad("p", load, tagged({"t"})) == product(3));
  CHECK(loads == 3);
}

TEST_CASE("tags: a lost generation key invalidates rather than revives") {
  CACHEASIDE_EACH_CLIENT(client);
  const auto options = testsupport::cacheOptions("tags-lost");
  CacheAside<Product> cache(client, options);
  int loads = 0;
  auto load = [&] {
    ++loads;
    return product(loads);
  };
  cache.invalidateTag("t");
  CHECK(cache.getOrLoad("p", load, tagged({"t"})) == product(1));
  testsupport::cmd(client, {"DEL", cacheaside::store::tagKey(options.keyNamespace, "t")});
  CHECK(cache.getOrLoad("p", load, tagged({"t"})) == product(2)); // evicted: reloaded
  CHECK(cache.getOrLoad("p", load, tagged({"t"})) == product(2));
}

TEST_CASE("tags: cached not found carries tags too") {
  CACHEASIDE_EACH_CLIENT(client);
  CacheAside<Product> cache(client, testsupport::cacheOptions("tags-negative"));
  int loads = 0;
  auto missing = [&]() -> std::optional<Product> {
    ++loads;
    return std::nullopt;
  };
  CHECK_FALSE(cache.getOrLoad("gone", missing, tagged({"t"})));
  CHECK_FALSE(cache.getOrLoad("gone", missing, tagged({"t"})));
  CHECK(loads == 1);
  cache.invalidateTag("t");
  CHECK(cache.getOrLoad(
            "gone", [] { return std::optional<Product>(product(4)); }, tagged({"t"})) ==
        product(4));
}

TEST_CASE("tags: a batch names tags for all its keys and reloads them in one loader call") {
  CACHEASIDE_EACH_CLIENT(client);
  CacheAside<Product> cache(client, testsupport::cacheOptions("tags-batch"));
  std::vector<std::vector<std::string>> calls;
  auto loader = [&](const std::vector<std::string>& keys) {
    calls.push_back(keys);
    std::unordered_map<std::string, Product> out;
    for (const auto& k : keys) {
      out.emplace(k, product(static_cast<int>(calls.size())));
    }
    return out;
  };
  const std::vector<std::string> keys{"a", "b", "c"};
  cache.getOrLoadMany(keys, loader, tagged({"t"}));
  cache.getOrLoadMany(keys, loader, tagged({"t"}));
  CHECK(calls.size() == 1);
  cache.invalidateTag("t");
  const auto got = cache.getOrLoadMany(keys, loader, tagged({"t"}));
  REQUIRE(calls.size() == 2);
  CHECK(calls[1] == keys);
  CHECK(got[2] == product(2));
}

TEST_CASE("tags: bad tags are refused") {
  CACHEASIDE_EACH_CLIENT(client);
  CacheAside<Product> cache(client, testsupport::cacheOptions("tags-bad"));
  const auto load = [] { return product(1); };
  CHECK_THROWS_AS(cache.getOrLoad("p", load, tagged({""})), std::invalid_argument);
  CHECK_THROWS_AS(cache.getOrLoad("p", load, tagged(std::vector<std::string>(17, "t"))),
                  std::invalid_argument);
  CHECK_THROWS_AS(cache.getOrLoad("p", load, tagged({std::string(1025, 't')})),
                  std::invalid_argument);
  CHECK_THROWS_AS(cache.invalidateTag(""), std::invalid_argument);
  CHECK(cache.getOrLoad("p", load, tagged({std::string(1024, '{')})) == product(1));
}
