#pragma once
// One test source, two clients: the guarantee tests run each case against the standalone server
// (HiredisClient) and against a Redis Cluster (HiredisClusterClient). The cluster is the one
// named by CACHEASIDE_TEST_CLUSTER=host:port (scripts/test.sh starts it), or else a private one
// started once for this process.
//
//   TEST_CASE("...") {
//     CACHEASIDE_EACH_CLIENT(client); // a RedisClient&, one section of the case per kind
//     CacheAside<std::string> cache(client.get(), ...);

#include "redis_cluster.hpp"
#include "test_redis.hpp"

#include <cacheaside/client/hiredis_cluster.hpp>

#if __has_include(<catch2/generators/catch_generators.hpp>)
#include <catch2/generators/catch_generators.hpp>
#endif

#include <cstdlib>
#include <memory>
#include <string>

namespace testsupport {

// The shared cluster's seed, "host:port".
inline std::string testClusterSeed() {
  if (const char* env = std::getenv("CACHEASIDE_TEST_CLUSTER"); env != nullptr && *env != '\0') {
    return env;
  }
  static RedisCluster cluster;
  return cluster.seed();
}

// Cluster client options for tests: per-node options as clientOptions(), and a call deadline
// long enough for a loaded machine under sanitizers.
inline cacheaside::HiredisClusterOptions clusterOptions(const std::string& seed) {
  cacheaside::HiredisClusterOptions o;
  o.seeds = {seed};
  o.node = clientOptions("127.0.0.1", 6379);
  o.callTimeout = std::chrono::seconds(5);
  return o;
}

// "standalone" or "cluster": a client for the shared server or the shared cluster.
inline std::unique_ptr<cacheaside::RedisClient> makeTestClient(const std::string& kind) {
  if (kind == "cluster") {
    return std::make_unique<cacheaside::HiredisClusterClient>(clusterOptions(testClusterSeed()));
  }
  return std::make_unique<cacheaside::HiredisClient>(clientOptions());
}

// Holds the client of one run of a case.
class TestClient {
public:
  explicit TestClient(const std::string& kind) : kind_(kind), client_(makeTestClient(kind)) {}
  cacheaside::RedisClient& get() const { return *client_; }
  operator cacheaside::RedisClient&() const { return *client_; }
  const std::string& kind() const { return kind_; }

private:
  std::string kind_;
  std::unique_ptr<cacheaside::RedisClient> client_;
};

} // namespace testsupport

// Runs the rest of the test case once per client kind (a Catch2 generator), naming the kind in
// any failure.
#define CACHEASIDE_EACH_CLIENT(name)                                                               \
  const std::string name##Kind = GENERATE(as<std::string>{}, "standalone", "cluster");             \
  INFO("client: " << name##Kind);                                                                  \
  testsupport::TestClient name(name##Kind)
