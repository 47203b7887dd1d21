// The near cache over a Redis Cluster (the shared test cluster): a feed per master, writes by
// another connection and by redis-cli on every master evicting the local copy, and a master's
// feed lost flushing and bypassing the near tier until it is back.
#include "support/catch.hpp"
#include "support/cmd.hpp"
#include "support/sync.hpp"
#include "support/test_clients.hpp"
#include "support/test_redis.hpp"

#include <cacheaside/cache_aside.hpp>
#include <cacheaside/client/hiredis_cluster.hpp>
#include <cacheaside/near/cluster_feed.hpp>

#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

using cacheaside::CacheAside;
using cacheaside::CacheOptions;
using cacheaside::HiredisClusterClient;
using cacheaside::near::ClusterFeedOptions;
using cacheaside::near::HiredisClusterInvalidationFeed;
using namespace std::chrono_literals;
using testsupport::eventually;

namespace {

struct NearCluster {
  explicit NearCluster(const std::string& seed) : client(testsupport::clusterOptions(seed)) {
    options = testsupport::cacheOptions("near-cluster");
    ClusterFeedOptions f;
    f.namespaces = {options.keyNamespace};
    f.lagLimit = 2s; // a busy machine under sanitizers must not count as a lagging feed
    feed = std::make_shared<HiredisClusterInvalidationFeed>(client, f);
    options.nearCache.feed = feed;
    REQUIRE(feed->waitUntilUp(20s));
  }
  HiredisClusterClient client;
  std::shared_ptr<HiredisClusterInvalidationFeed> feed;
  CacheOptions options;
};

// For each master ("host:port"), a user key whose value key it serves.
std::map<std::string, std::string> keyPerMaster(HiredisClusterClient& client,
                                                const std::string& ns) {
  const auto slots = testsupport::cmd(client, {"CLUSTER", "SLOTS"});
  REQUIRE(slots.type == cacheaside::Reply::Type::Array);
  const auto masterOf = [&](unsigned slot) {
    for (const auto& range : slots.elements) {
      if (range.elements[0].integer <= slot && slot <= range.elements[1].integer) {
        return "127.0.0.1:" + std::to_string(range.elements[2].elements[1].integer);
      }
    }
    return std::string();
  };
  std::map<std::string, std::string> out;
  for (int i = 0; i < 10000 && out.size() < slots.elements.size(); ++i) {
    const std::string key = "k" + std::to_string(i);
    const std::string master =
        masterOf(cacheaside::store::hashSlot(cacheaside::store::valueKey(ns, key)));
    out.emplace(master, key);
  }
  return out;
}

// Reads key until the near tier serves it (the fill's own invalidation may evict the first
// install once).
bool warmUp(CacheAside<std::string>& cache, const std::string& key, const std::string& value) {
  const auto loader = [&] { return value; };
  return eventually([&] {
    cache.getOrLoad(key, loader);
    const auto a = cache.getOrLoadShared(key, loader);
    return a == cache.getOrLoadShared(key, loader) && *a == value;
  });
}

int portOf(const std::string& address) {
  return std::stoi(address.substr(address.rfind(':') + 1));
}

} // namespace

TEST_CASE("near cache on a cluster: writes on every master, by another client and redis-cli, "
          "evict the local copy") {
  NearCluster n(testsupport::testClusterSeed());
  CacheAside<std::string> cache(n.client, n.options);
  HiredisClusterClient otherClient(testsupport::clusterOptions(testsupport::testClusterSeed()));
  CacheOptions w = n.options;
  w.nearCache.feed.reset();
  CacheAside<std::string> writer(otherClient, w);

  const auto keys = keyPerMaster(n.client, n.options.keyNamespace);
  REQUIRE(keys.size() == 3);
  CHECK(n.feed->watched().size() == 3); // a feed per master
  for (const auto& [master, key] : keys) {
    INFO("master " << master << ", key " << key);
    REQUIRE(warmUp(cache, key, "first"));
    const auto hits = cache.nearStats().hits;
    CHECK(*cache.getOrLoadShared(key, [] { return std::string("unused"); }) == "first");
    CHECK(cache.nearStats().hits == hits + 1);

    // Another client's set: reported by that master's feed.
    const auto before = cache.nearStats().invalidations;
    REQUIRE(writer.set(key, "second"));
    REQUIRE(eventually([&] { return cache.nearStats().invalidations > before; }));
    CHECK(cache.getOrLoad(key, [] { return std::string("unused"); }) == "second");

    // redis-cli, another process, deletes the value key on its master.
    REQUIRE(warmUp(cache, key, "second"));
    const auto before2 = cache.nearStats().invalidations;
    const std::string del = "redis-cli -p " + std::to_string(portOf(master)) + " DEL '" +
                            cacheaside::store::valueKey(n.options.keyNamespace, key) +
                            "' >/dev/null";
    REQUIRE(std::system(del.c_str()) == 0);
    REQUIRE(eventually([&] { return cache.nearStats().invalidations > before2; }));
    CHECK(cache.getOrLoad(key, [] { return std::string("third"); }) == "third");
  }
}

TEST_CASE("near cache on a cluster: a master's feed lost flushes and bypasses until it is back") {
  NearCluster n(testsupport::testClusterSeed());
  CacheAside<std::string> cache(n.client, n.options);
  const auto keys = keyPerMaster(n.client, n.options.keyNamespace);
  REQUIRE(keys.size() == 3);
  for (const auto& [master, key] : keys) {
    REQUIRE(warmUp(cache, key, "v"));
  }
  const std::string& victim = keys.begin()->first;
  const auto ups = n.feed->counters().ups;
  const long long id = n.feed->clientId(victim);
  REQUIRE(id != 0);
  CHECK(testsupport::adminCommand(portOf(victim), {"CLIENT", "KILL", "ID", std::to_string(id)}) ==
        "1");
  REQUIRE(eventually([&] { return n.feed->counters().ups > ups; })); // down, then up again
  CHECK(n.feed->counters().downs >= 1);
  CHECK(cache.nearStats().flushes >= 1);
  CHECK(n.feed->watched().size() == 3);
  // Every key was dropped, not only the lost master's: the tier was cleared as a whole.
  for (const auto& [master, key] : keys) {
    REQUIRE(warmUp(cache, key, "v"));
  }
}
