// Round trips as the server counts them (MONITOR on a private redis-server, so no other test's
// traffic mixes in).
#include "support/catch.hpp"
#include "support/monitor.hpp"
#include "support/product.hpp"
#include "support/redis_cluster.hpp"
#include "support/redis_server.hpp"
#include "support/test_clients.hpp"
#include "support/test_redis.hpp"

#include <cacheaside/cacheaside.hpp>
#include <cacheaside/hiredis_client.hpp>

#include <chrono>
#include <string>
#include <vector>

using cacheaside::CacheAside;
using cacheaside::HiredisClient;
using testsupport::product;
using testsupport::Product;

namespace {
std::string verb(const std::string& monitorLine) {
  // 1700000000.123456 [0 127.0.0.1:5555] "SET" "key" ...
  const auto open = monitorLine.find("] \"");
  const auto close = monitorLine.find('"', open + 3);
  return monitorLine.substr(open + 3, close - open - 3);
}
// Whether the server has SET ... NX ... GET (Redis 7.0 and later); before it, the cache looks up
// with a script, which the first lookup's syntax error switches it to.
bool hasSetNxGet(cacheaside::RedisClient& client) {
  const std::string info = testsupport::cmd(client, {"INFO", "server"}).str;
  const auto at = info.find("redis_version:");
  return at != std::string::npos && std::stoi(info.substr(at + 14)) >= 7;
}
using Verbs = std::vector<std::string>;
std::vector<std::string> verbs(const std::vector<std::string>& lines) {
  std::vector<std::string> out;
  for (const auto& l : lines) {
    out.push_back(verb(l));
  }
  return out;
}
} // namespace

TEST_CASE("a hit with XFetch on is one GET, and a miss that wins the lease three commands") {
  testsupport::RedisServer server;
  HiredisClient client(testsupport::clientOptions(server.host(), server.port()));
  const auto options = testsupport::cacheOptions("rtt");
  REQUIRE(options.xfetchBeta > 0); // the default: freshness is judged on every hit
  CacheAside<Product> cache(client, options);
  const bool modern = hasSetNxGet(client);
  testsupport::CommandMonitor monitor(server.host(), server.port());
  monitor.clientCommands();

  // The cache's first look asks the server's TIME along (its clock sample); finding nothing, it
  // takes the lease. A server that has not seen the fill script yet answers NOSCRIPT once (a
  // Redis before 7.0: the lookup's syntax error, then the lookup script, NOSCRIPT for both).
  cache.getOrLoad("warm-up", [] { return product(0); });
  CHECK(verbs(monitor.clientCommands()) ==
        (modern ? Verbs{"GET", "TIME", "SET", "EVALSHA", "EVAL"}
                : Verbs{"GET", "TIME", "SET", "EVALSHA", "EVAL", "EVALSHA", "EVAL"}));

  cache.getOrLoad("p", [] { return product(1); });
  CHECK(verbs(monitor.clientCommands()) ==
        (modern ? Verbs{"GET", "SET", "EVALSHA"} : Verbs{"GET", "EVALSHA", "EVALSHA"}));

  // The hit: one GET, its freshness read from the record's stamp.
  for (int i = 0; i < 3; ++i) {
    cache.getOrLoad("p", [] { return product(1); });
    CHECK(verbs(monitor.clientCommands()) == Verbs{"GET"});
  }
  CHECK(cache.stats().hits == 3);

  // LookupMode::Lease takes the lease in the first look (with this cache's first clock
  // sample): a miss is one command shorter, a hit is the lease-taking lookup.
  auto leasing = options;
  leasing.lookup = cacheaside::LookupMode::Lease;
  CacheAside<Product> direct(client, leasing);
  direct.getOrLoad("q", [] { return product(4); });
  CHECK(verbs(monitor.clientCommands()) ==
        (modern ? Verbs{"SET", "TIME", "EVALSHA"} : Verbs{"SET", "TIME", "EVALSHA", "EVALSHA"}));
  direct.getOrLoad("q", [] { return product(4); });
  CHECK(verbs(monitor.clientCommands()) == (modern ? Verbs{"SET"} : Verbs{"EVALSHA"}));

  cache.invalidate("p");
  CHECK(verbs(monitor.clientCommands()) == Verbs{"DEL"});

  // A restarted or failed-over server has lost its scripts: one more round trip, once.
  testsupport::cmd(client, {"SCRIPT", "FLUSH"});
  monitor.clientCommands();
  cache.getOrLoad("p", [] { return product(2); });
  CHECK(verbs(monitor.clientCommands()) ==
        (modern ? Verbs{"GET", "SET", "EVALSHA", "EVAL"}
                : Verbs{"GET", "EVALSHA", "EVAL", "EVALSHA", "EVAL"}));
  CHECK(cache.get("p") == product(2));
}

TEST_CASE("without XFetch and a stale window a hit is a single command") {
  const std::string kind = GENERATE(as<std::string>{}, "standalone", "cluster");
  INFO("client: " << kind);
  auto options = testsupport::cacheOptions("rtt-single");
  options.xfetchBeta = 0;
  // A private server, or a private cluster whose master for "p" is the one monitored.
  std::unique_ptr<testsupport::RedisServer> server;
  std::unique_ptr<testsupport::RedisCluster> cluster;
  std::unique_ptr<cacheaside::RedisClient> client;
  int port = 0;
  if (kind == "cluster") {
    cluster = std::make_unique<testsupport::RedisCluster>();
    client = std::make_unique<cacheaside::HiredisClusterClient>(
        testsupport::clusterOptions(cluster->seed()));
    const int slot =
        cacheaside::store::hashSlot(cacheaside::store::valueKey(options.keyNamespace, "p"));
    port = cluster->port(cluster->masterOf(slot, 0));
  } else {
    server = std::make_unique<testsupport::RedisServer>();
    client =
        std::make_unique<HiredisClient>(testsupport::clientOptions(server->host(), server->port()));
    port = server->port();
  }
  CacheAside<Product> cache(*client, options);
  cache.getOrLoad("p", [] { return product(1); });
  testsupport::CommandMonitor monitor("127.0.0.1", port);
  monitor.clientCommands();
  cache.getOrLoad("p", [] { return product(1); });
  CHECK(verbs(monitor.clientCommands()) == Verbs{"GET"});
}

TEST_CASE("a record of an earlier version (no expiry stamp) is judged by its PTTL") {
  testsupport::RedisServer server;
  HiredisClient client(testsupport::clientOptions(server.host(), server.port()));
  auto options = testsupport::cacheOptions("rtt-old");
  options.xfetchBeta = 0;
  options.staleWindow = std::chrono::seconds(60);
  CacheAside<Product> cache(client, options);
  cache.getOrLoad("warm-up", [] { return product(0); });
  // Written as earlier versions did: the header, no extension block, the JSON; 30 s left, all
  // of them inside the stale window.
  std::string old;
  cacheaside::envelope::appendHeader(old, cacheaside::EntryKind::Value, 5, 60000);
  old += nlohmann::json(product(1)).dump();
  const std::string key = cacheaside::store::valueKey(options.keyNamespace, "p");
  testsupport::cmd(client, {"SET", key, old, "PX", "30000"});
  testsupport::CommandMonitor monitor(server.host(), server.port());
  monitor.clientCommands();
  int loads = 0;
  CHECK(cache.getOrLoad("p", [&] {
    ++loads;
    return product(2);
  }) == product(2)); // found stale: this caller refreshed it
  const Verbs seen = verbs(monitor.clientCommands());
  REQUIRE(seen.size() >= 2);
  CHECK(Verbs(seen.begin(), seen.begin() + 2) == Verbs{"GET", "PTTL"});
  CHECK(cache.stats().refreshes == 1);
  CHECK(loads == 1);
  // The refresh wrote a stamped record: the next hit is one command again.
  CHECK(cache.getOrLoad("p", [] { return product(3); }) == product(2));
  CHECK(verbs(monitor.clientCommands()) == Verbs{"GET"});
}

TEST_CASE("the scripts' SHA-1 is the one Redis computes") {
  testsupport::RedisServer server;
  HiredisClient client(testsupport::clientOptions(server.host(), server.port()));
  for (std::size_t n = 0; n < 140; ++n) {
    const cacheaside::Script script("return '" + std::string(n, 'x') + "'");
    CHECK(testsupport::cmd(client, {"SCRIPT", "LOAD", script.source()}).str == script.sha1());
  }
}
