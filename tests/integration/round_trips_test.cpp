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

TEST_CASE("a hit costs one round trip and a miss that wins the lease two") {
  testsupport::RedisServer server;
  HiredisClient client(testsupport::clientOptions(server.host(), server.port()));
  CacheAside<Product> cache(client, testsupport::cacheOptions("rtt"));
  const bool modern = hasSetNxGet(client);
  testsupport::CommandMonitor monitor(server.host(), server.port());
  monitor.clientCommands();

  // A server that has not seen the fill script yet answers NOSCRIPT once (a Redis before 7.0:
  // the lookup's syntax error, then the lookup script, NOSCRIPT for both scripts).
  cache.getOrLoad("warm-up", [] { return product(0); });
  CHECK(verbs(monitor.clientCommands()) ==
        (modern ? Verbs{"SET", "PTTL", "EVALSHA", "EVAL"}
                : Verbs{"SET", "PTTL", "EVALSHA", "EVAL", "EVALSHA", "EVAL"}));

  cache.getOrLoad("p", [] { return product(1); });
  CHECK(verbs(monitor.clientCommands()) ==
        (modern ? Verbs{"SET", "PTTL", "EVALSHA"} : Verbs{"EVALSHA", "EVALSHA"}));

  cache.getOrLoad("p", [] { return product(1); });
  CHECK(verbs(monitor.clientCommands()) == (modern ? Verbs{"SET", "PTTL"} : Verbs{"EVALSHA"}));

  cache.invalidate("p");
  CHECK(verbs(monitor.clientCommands()) == Verbs{"DEL"});

  // A restarted or failed-over server has lost its scripts: one more round trip, once.
  testsupport::cmd(client, {"SCRIPT", "FLUSH"});
  monitor.clientCommands();
  cache.getOrLoad("p", [] { return product(2); });
  CHECK(verbs(monitor.clientCommands()) == (modern ? Verbs{"SET", "PTTL", "EVALSHA", "EVAL"}
                                                   : Verbs{"EVALSHA", "EVAL", "EVALSHA", "EVAL"}));
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
  const bool modern = hasSetNxGet(*client);
  testsupport::CommandMonitor monitor("127.0.0.1", port);
  monitor.clientCommands();
  cache.getOrLoad("p", [] { return product(1); });
  CHECK(verbs(monitor.clientCommands()) == (modern ? Verbs{"SET"} : Verbs{"EVALSHA"}));
}

TEST_CASE("the scripts' SHA-1 is the one Redis computes") {
  testsupport::RedisServer server;
  HiredisClient client(testsupport::clientOptions(server.host(), server.port()));
  for (std::size_t n = 0; n < 140; ++n) {
    const cacheaside::Script script("return '" + std::string(n, 'x') + "'");
    CHECK(testsupport::cmd(client, {"SCRIPT", "LOAD", script.source()}).str == script.sha1());
  }
}
