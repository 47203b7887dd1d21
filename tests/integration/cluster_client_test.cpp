// HiredisClusterClient against a real Redis Cluster (the shared one: CACHEASIDE_TEST_CLUSTER or
// a private one per process). Tests that kill or reshard nodes are in cluster_chaos_test.cpp.
#include "support/catch.hpp"
#include "support/test_clients.hpp"

#include <cacheaside/cacheaside.hpp>
#include <cacheaside/client/hiredis_cluster.hpp>
#include <cacheaside/detail/backend.hpp>
#include <cacheaside/store/store.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

using cacheaside::HiredisClusterClient;
using cacheaside::HiredisClusterOptions;
using cacheaside::Reply;
using namespace std::chrono_literals;

namespace {

// The port of the master serving `key`'s slot, from CLUSTER SLOTS as the client sees it.
int masterPort(cacheaside::RedisClient& client, const std::string& key) {
  const Reply slots = testsupport::cmd(client, {"CLUSTER", "SLOTS"});
  const long long slot = cacheaside::store::hashSlot(key);
  for (const Reply& range : slots.elements) {
    if (range.elements.at(0).integer <= slot && slot <= range.elements.at(1).integer) {
      return static_cast<int>(range.elements.at(2).elements.at(1).integer);
    }
  }
  throw std::runtime_error("no master serves slot " + std::to_string(slot));
}

// One key on each master: "<prefix>:<n>" for the first n that reaches a master not yet covered.
std::vector<std::string> keyPerMaster(cacheaside::RedisClient& client, const std::string& prefix) {
  std::vector<std::string> keys;
  std::set<int> ports;
  for (int n = 0; ports.size() < 3 && n < 1000; ++n) {
    const std::string key = prefix + ":" + std::to_string(n);
    if (ports.insert(masterPort(client, key)).second) {
      keys.push_back(key);
    }
  }
  REQUIRE(keys.size() == 3);
  return keys;
}

} // namespace

TEST_CASE("cluster: every key reaches its slot's master and a pipeline keeps the caller's order") {
  HiredisClusterClient client(testsupport::clusterOptions(testsupport::testClusterSeed()));
  const std::string ns = testsupport::uniqueNamespace("cluster-order");
  std::vector<std::string> keys;
  std::vector<cacheaside::Command> sets;
  std::vector<cacheaside::Command> gets;
  for (int i = 0; i < 200; ++i) {
    keys.push_back(ns + ":" + std::to_string(i));
  }
  for (const auto& k : keys) {
    sets.push_back({k, {"SET", k, k}});
  }
  for (const auto& k : keys) {
    gets.push_back({k, {"GET", k}});
  }
  const auto setReplies = client.pipeline(sets);
  const auto getReplies = client.pipeline(gets);
  REQUIRE(getReplies.size() == keys.size());
  std::set<int> ports;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    CHECK(setReplies[i].str == "OK");
    CHECK(getReplies[i].str == keys[i]);
    ports.insert(masterPort(client, keys[i]));
  }
  CHECK(ports.size() == 3); // 200 keys spread over every master
  // Asked directly, the master of a key's slot holds it (no redirect hid a wrong routing).
  const int port = masterPort(client, keys[0]);
  cacheaside::HiredisClient direct(testsupport::clientOptions("127.0.0.1", port));
  CHECK(testsupport::cmd(direct, {"GET", keys[0]}).str == keys[0]);
  std::vector<cacheaside::Command> dels;
  for (const auto& k : keys) {
    dels.push_back({k, {"DEL", k}});
  }
  for (const Reply& r : client.pipeline(dels)) {
    CHECK(r.integer == 1);
  }
}

TEST_CASE("cluster: error replies come back in place and keyless commands run on some master") {
  HiredisClusterClient client(testsupport::clusterOptions(testsupport::testClusterSeed()));
  const auto keys = keyPerMaster(client, testsupport::uniqueNamespace("cluster-errors"));
  const auto replies = client.pipeline({{keys[0], {"SET", keys[0], "x"}},
                                        {keys[1], {"INCRBY", keys[1], "not a number"}},
                                        {keys[2], {"INCR", keys[2]}},
                                        {keys[0], {"INCR", keys[0]}},
                                        {{}, {"PING"}}});
  REQUIRE(replies.size() == 5);
  CHECK(replies[0].str == "OK");
  CHECK(replies[1].isError());
  CHECK(replies[2].integer == 1);
  CHECK(replies[3].isError()); // "x" is not an integer
  CHECK(replies[4].str == "PONG");
  for (const auto& k : keys) {
    testsupport::cmd(client, {"DEL", k});
  }
}

TEST_CASE("cluster: when one master of a pipeline lost its scripts only its commands fall back") {
  HiredisClusterClient client(testsupport::clusterOptions(testsupport::testClusterSeed()));
  const auto keys = keyPerMaster(client, testsupport::uniqueNamespace("cluster-noscript"));
  cacheaside::CacheOptions options;
  const cacheaside::store::Store store(options.lockTtl);
  cacheaside::detail::Backend backend(client, options, store);
  std::vector<cacheaside::Command> releases;
  for (const auto& k : keys) {
    releases.push_back(cacheaside::store::Store::release(k, "token"));
  }
  // Every master knows the release script, then one forgets it.
  for (const auto& k : keys) {
    cacheaside::HiredisClient node(testsupport::clientOptions("127.0.0.1", masterPort(client, k)));
    testsupport::cmd(node, {"SCRIPT", "LOAD", cacheaside::store::scripts::release().source()});
  }
  cacheaside::HiredisClient forgetful(
      testsupport::clientOptions("127.0.0.1", masterPort(client, keys[1])));
  testsupport::cmd(forgetful, {"SCRIPT", "FLUSH"});
  const auto raw = client.pipeline(releases);
  REQUIRE(raw.size() == 3);
  CHECK_FALSE(raw[0].isError());
  CHECK(raw[1].str.rfind("NOSCRIPT", 0) == 0);
  CHECK_FALSE(raw[2].isError());
  testsupport::cmd(forgetful, {"SCRIPT", "FLUSH"});
  const auto replies = backend.exchange({}, releases);
  REQUIRE(replies.size() == 3);
  for (const Reply& r : replies) {
    CHECK(cacheaside::store::Store::parseWrite(r) == cacheaside::store::Write::Fenced);
  }
}

TEST_CASE("cluster: no reachable seed is a TimeoutError within the call's deadline") {
  HiredisClusterOptions o =
      testsupport::clusterOptions("127.0.0.1:" + std::to_string(testsupport::freeLoopbackPort()));
  o.callTimeout = 300ms;
  HiredisClusterClient client(o);
  const auto started = std::chrono::steady_clock::now();
  CHECK_THROWS_AS(testsupport::cmd(client, {"GET", "k"}), cacheaside::TimeoutError);
  const auto took = std::chrono::steady_clock::now() - started;
  CHECK(took >= 300ms);
  CHECK(took < 300ms + 2s); // the deadline, plus a margin a busy machine keeps
}

TEST_CASE("cluster: options that cannot work are rejected up front") {
  HiredisClusterOptions o;
  CHECK_THROWS_AS(HiredisClusterClient(o), std::invalid_argument); // no seed
  o.seeds = {"127.0.0.1"};
  CHECK_THROWS_AS(HiredisClusterClient(o), std::invalid_argument); // no port
  o.seeds = {"127.0.0.1:70000"};
  CHECK_THROWS_AS(HiredisClusterClient(o), std::invalid_argument);
  o.seeds = {"127.0.0.1:7000"};
  o.node.db = 1;
  CHECK_THROWS_AS(HiredisClusterClient(o), std::invalid_argument);
  o.node.db = 0;
  o.callTimeout = 0ms;
  CHECK_THROWS_AS(HiredisClusterClient(o), std::invalid_argument);
  o.callTimeout = 100ms;
  o.node.poolSize = 0;
  CHECK_THROWS_AS(HiredisClusterClient(o), std::invalid_argument);
}

TEST_CASE("cluster: a forked child uses its own connections and the parent's still work") {
  HiredisClusterClient client(testsupport::clusterOptions(testsupport::testClusterSeed()));
  const auto keys = keyPerMaster(client, testsupport::uniqueNamespace("cluster-fork"));
  for (const auto& k : keys) {
    REQUIRE(testsupport::cmd(client, {"SET", k, "parent"}).str == "OK");
  }
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int ok = 0;
    try {
      for (const auto& k : keys) {
        ok += testsupport::cmd(client, {"GET", k}).str == "parent" ? 1 : 0;
        testsupport::cmd(client, {"SET", k, "child"});
      }
    } catch (...) {
      ::_exit(2);
    }
    ::_exit(ok == 3 ? 0 : 1);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  for (const auto& k : keys) {
    CHECK(testsupport::cmd(client, {"GET", k}).str == "child");
    testsupport::cmd(client, {"DEL", k});
  }
}

TEST_CASE("cluster: a tagged batch over every master, its tag key in another slot") {
  HiredisClusterClient client(testsupport::clusterOptions(testsupport::testClusterSeed()));
  cacheaside::CacheAside<std::string> cache(client, testsupport::cacheOptions("cluster-batch"));
  cacheaside::CallOptions books;
  books.tags = {"books"};
  std::vector<std::string> keys;
  for (int i = 0; i < 2500; ++i) { // more than one pipeline's 1024 commands
    keys.push_back("k" + std::to_string(i));
  }
  int calls = 0;
  std::size_t asked = 0;
  std::string generation = "a";
  auto loader = [&](const std::vector<std::string>& which) {
    ++calls;
    asked += which.size();
    std::map<std::string, std::string> out;
    for (const auto& k : which) {
      out[k] = k + generation;
    }
    return out;
  };
  const auto expectAll = [&](const std::vector<std::optional<std::string>>& got) {
    REQUIRE(got.size() == keys.size());
    std::size_t right = 0;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      right += got[i] && *got[i] == keys[i] + generation ? 1 : 0;
    }
    CHECK(right == keys.size());
  };
  expectAll(cache.getOrLoadMany(keys, loader, books));
  CHECK(calls == 1);
  CHECK(asked == keys.size());
  expectAll(cache.getOrLoadMany(keys, loader, books)); // every key a hit
  CHECK(calls == 1);
  cache.invalidateTag("books");
  generation = "b";
  expectAll(cache.getOrLoadMany(keys, loader, books));
  CHECK(calls == 2);
  CHECK(asked == 2 * keys.size());
  CHECK(cache.getOrLoad(
            "k7", [] { return std::string("single"); }, books) == "k7b");
  cache.invalidateTag("books");
  CHECK(cache.getOrLoad(
            "k7", [] { return std::string("single"); }, books) == "single");
  CHECK(cache.stats().redisErrors == 0);
}
