// The near cache against a real redis-server: hits served in process, every kind of change
// (own writes, other connections, FLUSHALL, expiry) removing the local copy, the feed's loss and
// return, and waiters woken by the fill's invalidation.
#include "support/catch.hpp"
#include "support/cmd.hpp"
#include "support/redis_server.hpp"
#include "support/sync.hpp"
#include "support/test_redis.hpp"

#include <cacheaside/cache_aside.hpp>
#include <cacheaside/hiredis_client.hpp>
#include <cacheaside/near/hiredis_feed.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

using cacheaside::CacheAside;
using cacheaside::CacheOptions;
using cacheaside::HiredisClient;
using cacheaside::near::HiredisFeedOptions;
using cacheaside::near::HiredisInvalidationFeed;
using namespace std::chrono_literals;
using testsupport::cmd;
using testsupport::eventually;

namespace {

struct Near {
  explicit Near(const cacheaside::HiredisOptions& redis, const std::string& prefix = "near")
      : client(redis) {
    options = testsupport::cacheOptions(prefix);
    HiredisFeedOptions f;
    f.redis = redis;
    f.namespaces = {options.keyNamespace};
    f.lagLimit = 2s; // a busy machine under sanitizers must not count as a lagging feed
    feed = std::make_shared<HiredisInvalidationFeed>(f);
    options.nearCache.feed = feed;
    REQUIRE(feed->waitUntilUp(20s));
  }
  HiredisClient client;
  std::shared_ptr<HiredisInvalidationFeed> feed;
  CacheOptions options;
};

// Reads key until the near tier holds it: the invalidation of the fill (or of an earlier write)
// may arrive after the first Redis hit installed, and evict it once.
template <typename Cache, typename Loader>
bool warmUp(Cache& cache, const char* key, Loader loader) {
  return eventually([&] {
    cache.getOrLoad(key, loader);
    const auto a = cache.getOrLoadShared(key, loader);
    const auto b = cache.getOrLoadShared(key, loader);
    return a.get() == b.get() && cache.nearStats().entries >= 1;
  });
}

} // namespace

TEST_CASE("near cache: off by default, and the read path is Redis's") {
  HiredisClient client(testsupport::clientOptions());
  CacheAside<std::string> cache(client, testsupport::cacheOptions("near-off"));
  int loads = 0;
  for (int i = 0; i < 3; ++i) {
    CHECK(cache.getOrLoad("k", [&] { return std::to_string(++loads); }) == "1");
  }
  CHECK(cache.nearStats().hits == 0);
  CHECK(cache.nearStats().bypassed);
  CHECK(cache.stats().hits == 2);
}

TEST_CASE("near cache: a Redis hit installs, the next read is served in process and shared") {
  Near n(testsupport::clientOptions());
  CacheAside<std::string> cache(n.client, n.options);
  int loads = 0;
  const auto loader = [&] { return "v" + std::to_string(++loads); };
  CHECK(cache.getOrLoad("k", loader) == "v1"); // miss: loads
  REQUIRE(warmUp(cache, "k", loader));         // a Redis hit installs
  const auto redisHits = cache.stats().hits;
  cacheaside::Outcome how{};
  const auto a = cache.getOrLoadShared("k", loader, {}, &how);
  const auto b = cache.getOrLoadShared("k", loader, {}, &how);
  REQUIRE(a != nullptr);
  CHECK(*a == "v1");
  CHECK(a.get() == b.get()); // the held value itself
  CHECK(how == cacheaside::Outcome::Hit);
  CHECK(cache.stats().hits == redisHits); // Redis was not asked
  CHECK(cache.nearStats().hits >= 2);
  CHECK(loads == 1);
}

TEST_CASE("near cache: own invalidate and set evict at once") {
  Near n(testsupport::clientOptions());
  CacheAside<std::string> cache(n.client, n.options);
  int loads = 0;
  const auto loader = [&] { return "v" + std::to_string(++loads); };
  REQUIRE(warmUp(cache, "k", loader));
  cache.invalidate("k");
  CHECK(cache.getOrLoad("k", loader) == "v2"); // not the near copy of v1
  REQUIRE(warmUp(cache, "k", loader));
  REQUIRE(cache.set("k", "written"));
  CHECK(cache.getOrLoad("k", loader) == "written");
}

TEST_CASE("near cache: a change by another connection evicts through the feed") {
  Near n(testsupport::clientOptions());
  CacheAside<std::string> cache(n.client, n.options);
  CacheAside<std::string> writer(n.client, [&] {
    CacheOptions o = n.options;
    o.nearCache.feed.reset();
    return o;
  }());
  const auto loader = [] { return std::string("first"); };
  REQUIRE(warmUp(cache, "k", loader));
  const auto before = cache.nearStats().invalidations;
  REQUIRE(writer.set("k", "second"));
  REQUIRE(eventually([&] { return cache.nearStats().invalidations > before; }));
  CHECK(cache.nearStats().entries == 0);
  CHECK(cache.getOrLoad("k", loader) == "second");
  // A raw DEL, as redis-cli would do it.
  REQUIRE(warmUp(cache, "k", loader));
  const auto before2 = cache.nearStats().invalidations;
  cmd(n.client, {"DEL", cacheaside::store::valueKey(n.options.keyNamespace, "k")});
  REQUIRE(eventually([&] { return cache.nearStats().invalidations > before2; }));
  CHECK(cache.getOrLoad("k", loader) == "first");
}

TEST_CASE("near cache: FLUSHALL flushes, a killed feed bypasses until it is back, a restart too") {
  testsupport::RedisServer server;
  const auto redis = testsupport::clientOptions(server.host(), server.port());
  Near n(redis);
  CacheAside<std::string> cache(n.client, n.options);
  const auto loader = [] { return std::string("v"); };
  const auto warm = [&] {
    cache.getOrLoad("k", loader);
    const auto a = cache.getOrLoadShared("k", loader);
    return a.get() == cache.getOrLoadShared("k", loader).get() && cache.nearStats().entries == 1;
  };
  REQUIRE(eventually(warm));
  cmd(n.client, {"FLUSHALL"});
  REQUIRE(eventually([&] { return cache.nearStats().entries == 0; }));
  CHECK(n.feed->counters().flushes >= 1);

  REQUIRE(eventually(warm));
  const auto ups = n.feed->counters().ups;
  const std::string id = std::to_string(n.feed->clientId());
  cmd(n.client, {"CLIENT", "KILL", "ID", id});
  REQUIRE(eventually([&] { return n.feed->counters().ups > ups; }));
  CHECK(n.feed->counters().downs >= 1);
  CHECK(cache.nearStats().entries == 0); // cleared when it went down
  REQUIRE(eventually(warm));

  const auto ups2 = n.feed->counters().ups;
  server.restart();
  REQUIRE(eventually([&] { return n.feed->counters().ups > ups2; }));
  CHECK(cache.nearStats().entries == 0);
  REQUIRE(eventually([&] {
    try {
      return warm();
    } catch (const std::exception&) {
      return false;
    }
  }));
}

TEST_CASE("near cache: a waiter is woken by the fill's invalidation, not by its poll") {
  Near n(testsupport::clientOptions());
  CacheOptions o = n.options;
  o.pollInitial = 10s; // a waiter that polled would wait this long
  o.pollMax = 10s;
  o.waitBudget = 30s;
  CacheAside<std::string> loaderSide(n.client, o);
  CacheAside<std::string> waiterSide(n.client, o); // another instance: no in-process coalescing
  testsupport::Latch loading(2);
  std::thread t([&] {
    loaderSide.getOrLoad("k", [&] {
      loading.arriveAndWait();
      std::this_thread::sleep_for(100ms); // the load the waiter waits for
      return std::string("loaded");
    });
  });
  loading.arriveAndWait();
  const auto started = std::chrono::steady_clock::now();
  cacheaside::Outcome how{};
  const std::string got = waiterSide.getOrLoad(
      "k", [] { return std::string("mine"); }, {}, &how);
  const auto took = std::chrono::steady_clock::now() - started;
  t.join();
  CHECK(got == "loaded");
  CHECK(took < 5s); // half the poll it did not wait for
}

TEST_CASE("near cache: a feed refuses a namespace it does not track") {
  Near n(testsupport::clientOptions());
  CacheOptions o = n.options;
  o.keyNamespace = "other";
  CHECK_THROWS_AS(CacheAside<std::string>(n.client, o), std::invalid_argument);
}

TEST_CASE("near cache: a forked child reads through Redis and tears its copy down") {
  auto n = std::make_unique<Near>(testsupport::clientOptions());
  auto cache = std::make_unique<CacheAside<std::string>>(n->client, n->options);
  const auto loader = [] { return std::string("parent"); };
  REQUIRE(warmUp(*cache, "k", loader));
  const pid_t child = ::fork();
  if (child == 0) {
    alarm(20); // a hang ends the child, and the parent sees it
    int code = 0;
    const auto held = cache->nearStats().hits;
    if (cache->getOrLoad("k", loader) != "parent") {
      code = 10;
    } else if (cache->nearStats().hits != held || !cache->nearStats().bypassed) {
      code = 11; // the child has no feed: it must not serve its copy of the parent's tier
    }
    cache.reset();
    n.reset(); // the feed, whose thread stayed in the parent
    std::_Exit(code);
  }
  REQUIRE(child > 0);
  int status = 0;
  const bool exited = eventually([&] { return ::waitpid(child, &status, WNOHANG) == child; }, 30s);
  if (!exited) {
    ::kill(child, SIGKILL);
    ::waitpid(child, &status, 0);
  }
  REQUIRE(exited);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(cache->getOrLoad("k", loader) == "parent");
}

TEST_CASE("near cache: calls that name tags bypass it, so invalidateTag is never outlived") {
  Near n(testsupport::clientOptions());
  CacheAside<std::string> cache(n.client, n.options);
  CacheAside<std::string> other(n.client, [&] { // another process: its tag is not tracked
    CacheOptions o = n.options;
    o.nearCache.feed.reset();
    return o;
  }());
  cacheaside::CallOptions books;
  books.tags = {"books"};
  int loads = 0;
  const auto loader = [&] { return "v" + std::to_string(++loads); };
  // Read it tagged (miss, then Redis hits) long enough for a near install to happen if any.
  REQUIRE(cache.getOrLoad("t", loader, books) == "v1");
  for (int i = 0; i < 20; ++i) {
    REQUIRE(cache.getOrLoad("t", loader, books) == "v1");
  }
  CHECK(cache.nearStats().entries == 0);
  cache.invalidateTag("books");
  CHECK(cache.getOrLoad("t", loader, books) == "v2");
  CHECK(*cache.getOrLoadShared("t", loader, books) == "v2");
  other.invalidateTag("books");
  CHECK(*cache.getOrLoadShared("t", loader, books) == "v3");
  CHECK(cache.getOrLoad("t", loader, books) == "v3");

  // A near copy from an untagged call does not answer a tagged one.
  REQUIRE(cache.getOrLoad("u", loader) == "v4");
  REQUIRE(warmUp(cache, "u", loader));
  CHECK(cache.getOrLoad("u", loader, books) == "v5"); // the untagged record lacks the tag
  CHECK(loads == 5);
}

TEST_CASE("near cache: a near hit refuses invalid call options as a Redis read does") {
  Near n(testsupport::clientOptions());
  CacheAside<std::string> cache(n.client, n.options);
  const auto loader = [] { return std::string("v"); };
  REQUIRE(warmUp(cache, "k", loader));
  cacheaside::CallOptions bad;
  bad.ttl = std::chrono::milliseconds(-1);
  CHECK_THROWS_AS(cache.getOrLoad("k", loader, bad), std::invalid_argument);
  CHECK_THROWS_AS(cache.getOrLoadShared("k", loader, bad), std::invalid_argument);
}

TEST_CASE("near cache: get() serves the near copy, installs what it reads, and sees changes") {
  Near n(testsupport::clientOptions());
  CacheAside<std::string> cache(n.client, n.options);
  CacheAside<std::string> writer(n.client, [&] {
    CacheOptions o = n.options;
    o.nearCache.feed.reset();
    return o;
  }());
  const auto loader = [] { return std::string("first"); };
  REQUIRE(warmUp(cache, "k", loader)); // also gives the cache its estimate of the server clock
  const auto hits = cache.nearStats().hits;
  CHECK(cache.get("k") == "first");
  CHECK(cache.nearStats().hits == hits + 1); // served in process

  // Another connection's write: the next get() reads Redis, installs, then serves it in process.
  const auto before = cache.nearStats().invalidations;
  REQUIRE(writer.set("k", "second"));
  REQUIRE(eventually([&] { return cache.nearStats().invalidations > before; }));
  REQUIRE(eventually([&] {
    const auto installs = cache.nearStats().installs;
    return cache.get("k") == "second" && cache.nearStats().installs > installs;
  }));
  const auto hits2 = cache.nearStats().hits;
  CHECK(cache.get("k") == "second");
  CHECK(cache.nearStats().hits == hits2 + 1);

  // Own invalidate: gone at once, and get() does not bring back the old copy.
  cache.invalidate("k");
  CHECK_FALSE(cache.get("k").has_value());
  CHECK(cache.nearStats().entries == 0);
}
