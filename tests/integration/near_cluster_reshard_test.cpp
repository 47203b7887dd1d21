// The near cache over a private Redis Cluster whose slot moves: the source's MIGRATE evicts the
// local copy, the MOVED that follows flushes the near tier, and writes at the slot's new master
// evict through that master's feed.
#include "support/catch.hpp"
#include "support/redis_cluster.hpp"
#include "support/sync.hpp"
#include "support/test_clients.hpp"
#include "support/test_redis.hpp"

#include <cacheaside/cache_aside.hpp>
#include <cacheaside/client/hiredis_cluster.hpp>
#include <cacheaside/near/cluster_feed.hpp>

#include <hiredis/hiredis.h>

#include <chrono>
#include <memory>
#include <string>

using cacheaside::CacheAside;
using cacheaside::CacheOptions;
using cacheaside::HiredisClusterClient;
using namespace std::chrono_literals;
using testsupport::eventually;

TEST_CASE("near cache on a cluster: a slot moved to another master flushes, and that master's "
          "writes evict") {
  testsupport::RedisCluster cluster;
  HiredisClusterClient client(testsupport::clusterOptions(cluster.seed()));
  CacheOptions options = testsupport::cacheOptions("near-reshard");
  cacheaside::near::ClusterFeedOptions f;
  f.namespaces = {options.keyNamespace};
  f.lagLimit = 2s;
  auto feed = std::make_shared<cacheaside::near::HiredisClusterInvalidationFeed>(client, f);
  options.nearCache.feed = feed;
  REQUIRE(feed->waitUntilUp(20s));
  CacheAside<std::string> cache(client, options);
  HiredisClusterClient otherClient(testsupport::clusterOptions(cluster.seed()));
  CacheOptions w = options;
  w.nearCache.feed.reset();
  CacheAside<std::string> writer(otherClient, w);

  const std::string valueKey = cacheaside::store::valueKey(options.keyNamespace, "k");
  const int slot = static_cast<int>(cacheaside::store::hashSlot(valueKey));
  const auto warm = [&](const std::string& value) {
    return eventually([&] {
      cache.getOrLoad("k", [&] { return value; });
      const auto a = cache.getOrLoadShared("k", [&] { return value; });
      return a == cache.getOrLoadShared("k", [&] { return value; }) && *a == value;
    });
  };
  REQUIRE(warm("v1"));

  const int from = cluster.masterOf(slot, 0);
  int to = -1;
  for (int probe : {0, 8000, 16383}) {
    const int m = cluster.masterOf(probe, 0);
    if (m >= 0 && m != from) {
      to = m;
      break;
    }
  }
  REQUIRE(to >= 0);
  const std::string slotText = std::to_string(slot);
  const std::string fromId = cluster.nodeId(from);
  const std::string toId = cluster.nodeId(to);
  const auto invalidations = cache.nearStats().invalidations;
  const auto topologyFlushes = feed->counters().topologyFlushes;
  CHECK(testsupport::adminCommand(cluster.port(to),
                                  {"CLUSTER", "SETSLOT", slotText, "IMPORTING", fromId}) == "OK");
  CHECK(testsupport::adminCommand(cluster.port(from),
                                  {"CLUSTER", "SETSLOT", slotText, "MIGRATING", toId}) == "OK");
  {
    timeval tv{1, 0};
    redisContext* c = redisConnectWithTimeout("127.0.0.1", cluster.port(from), tv);
    REQUIRE((c != nullptr && c->err == 0));
    redisSetTimeout(c, tv);
    auto* m =
        static_cast<redisReply*>(redisCommand(c, "MIGRATE 127.0.0.1 %d %b 0 5000 REPLACE",
                                              cluster.port(to), valueKey.data(), valueKey.size()));
    REQUIRE(m != nullptr);
    CHECK(std::string(m->str, m->len) == "OK");
    freeReplyObject(m);
    redisFree(c);
  }
  for (int n = 0; n < testsupport::RedisCluster::kNodes; ++n) {
    testsupport::adminCommand(cluster.port(n), {"CLUSTER", "SETSLOT", slotText, "NODE", toId});
  }
  // The source's delete (and the target's restore) reach the near tier through the feeds.
  REQUIRE(eventually([&] { return cache.nearStats().invalidations > invalidations; }));
  CHECK(cache.nearStats().entries == 0);
  // The next read meets MOVED: the map changes, the near tier is flushed.
  CHECK(cache.getOrLoad("k", [] { return std::string("unused"); }) == "v1");
  CHECK(feed->counters().topologyFlushes > topologyFlushes);
  REQUIRE(warm("v1"));
  // A write at the new master evicts through its feed.
  const auto before = cache.nearStats().invalidations;
  REQUIRE(writer.set("k", "v2"));
  REQUIRE(eventually([&] { return cache.nearStats().invalidations > before; }));
  CHECK(cache.getOrLoad("k", [] { return std::string("unused"); }) == "v2");
}
