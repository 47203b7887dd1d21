// Failover and resharding under load, on a private Redis Cluster per case (3 masters, 3
// replicas, cluster-node-timeout 2000). Label cluster-chaos: scripts/test.sh runs these in one
// configuration only. Readers call getOrLoad (a CacheAside per thread) and check every value as
// it returns: for the key asked, and at least the version whose invalidate had returned before
// the read began.
#include "support/catch.hpp"
#include "support/redis_cluster.hpp"
#include "support/test_clients.hpp"

#include <cacheaside/cacheaside.hpp>
#include <cacheaside/client/hiredis_cluster.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

using cacheaside::CacheAside;
using cacheaside::HiredisClusterClient;
using cacheaside::Outcome;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kCallTimeout = 300ms;
constexpr auto kWaitBudget = 1000ms;
// The bound of one getOrLoad: a wait for another caller's load, then its own lookup, load and
// fill, each call within kCallTimeout; plus a second (slack) for a busy machine.
constexpr auto kCallBound = kWaitBudget + 3 * kCallTimeout + 1000ms;

cacheaside::HiredisClusterOptions chaosClientOptions(const std::string& seed) {
  cacheaside::HiredisClusterOptions o;
  o.seeds = {seed};
  o.node.connectTimeout = 100ms;
  o.node.commandTimeout = 200ms;
  o.node.poolWaitTimeout = 200ms;
  o.node.poolSize = 16;
  o.callTimeout = kCallTimeout;
  return o;
}

// The source of truth the loaders read, with each key's version and the highest version whose
// invalidate has returned.
struct Source {
  explicit Source(int keys) : version(keys), published(keys), loads(keys), invalidations(keys) {}
  std::vector<std::atomic<long>> version;
  std::vector<std::atomic<long>> published;
  std::vector<std::atomic<long>> loads;
  std::vector<std::atomic<long>> invalidations;
};

std::string valueOf(int key, long version) {
  return std::to_string(key) + "@" + std::to_string(version);
}

// What readers and the writer saw.
struct Tally {
  std::atomic<long> calls{0};
  std::atomic<long> failed{0};
  std::atomic<long> stale{0};
  std::atomic<long> wrong{0};
  std::atomic<long> hits{0};
  std::atomic<long long> slowestUs{0};
  std::atomic<long long> firstWatchedHitUs{-1}; // since `watchFrom`, on a watched slot
  std::atomic<long long> watchFromUs{-1};

  void slowest(long long us) {
    long long seen = slowestUs.load();
    while (us > seen && !slowestUs.compare_exchange_weak(seen, us)) {
    }
  }
};

long long sinceUs(Clock::time_point from) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - from).count();
}

// Readers over user keys "k<id>" for the given ids (index i names ids[i]), a writer that bumps a
// version and invalidates, until `stop`. watched(i) marks the keys whose hits are timed after
// tally.watchFromUs is set.
class Load {
public:
  template <typename Watched>
  Load(cacheaside::RedisClient& client, const std::string& ns, std::vector<int> ids, int readers,
       Watched watched, Clock::time_point epoch)
      : source_(static_cast<int>(ids.size())), ids_(std::move(ids)),
        keys_(static_cast<int>(ids_.size())), epoch_(epoch) {
    for (int r = 0; r < readers; ++r) {
      threads_.emplace_back([this, &client, ns, r, watched] { read(client, ns, r, watched); });
    }
    threads_.emplace_back([this, &client, ns] { write(client, ns); });
  }

  ~Load() { stop(); }
  Load(const Load&) = delete;
  Load& operator=(const Load&) = delete;

  void stop() {
    stop_ = true;
    for (auto& t : threads_) {
      if (t.joinable()) {
        t.join();
      }
    }
  }

  Tally& tally() { return tally_; }
  Source& source() { return source_; }
  void watchFromNow() { tally_.watchFromUs = sinceUs(epoch_); }

private:
  cacheaside::CacheOptions cacheOptions(const std::string& ns) const {
    cacheaside::CacheOptions o;
    o.keyNamespace = ns;
    o.ttl = 60s; // no expiry during the run: every load after the first follows an invalidate
    o.ttlJitter = 0;
    o.xfetchBeta = 0;
    o.waitBudget = kWaitBudget;
    o.lockTtl = 1000ms;
    return o;
  }

  template <typename Watched>
  void read(cacheaside::RedisClient& client, const std::string& ns, int seed, Watched watched) {
    CacheAside<std::string> cache(client, cacheOptions(ns));
    std::mt19937 random(static_cast<unsigned>(seed) * 7919U + 1U);
    std::uniform_int_distribution<int> pick(0, keys_ - 1);
    while (!stop_) {
      const int k = pick(random);
      const long floor = source_.published[static_cast<std::size_t>(k)].load();
      const auto started = Clock::now();
      Outcome how = Outcome::Loaded;
      try {
        const std::string got = cache.getOrLoad(
            "k" + std::to_string(ids_[static_cast<std::size_t>(k)]),
            [&] {
              source_.loads[static_cast<std::size_t>(k)]++;
              return valueOf(k, source_.version[static_cast<std::size_t>(k)].load());
            },
            {}, &how);
        const auto at = got.find('@');
        if (at == std::string::npos || got.substr(0, at) != std::to_string(k)) {
          tally_.wrong++;
        } else if (std::stol(got.substr(at + 1)) < floor) {
          tally_.stale++;
        }
      } catch (const std::exception& e) {
        tally_.failed++;
        std::fprintf(stderr, "getOrLoad failed: %s\n", e.what());
      }
      tally_.calls++;
      tally_.slowest(sinceUs(started));
      if (how == Outcome::Hit) {
        tally_.hits++;
        const long long from = tally_.watchFromUs.load();
        long long unset = -1;
        if (from >= 0 && watched(k)) {
          tally_.firstWatchedHitUs.compare_exchange_strong(unset, sinceUs(epoch_) - from);
        }
      }
    }
  }

  void write(cacheaside::RedisClient& client, const std::string& ns) {
    CacheAside<std::string> cache(client, cacheOptions(ns));
    std::mt19937 random(4242);
    std::uniform_int_distribution<int> pick(0, keys_ - 1);
    while (!stop_) {
      const int k = pick(random);
      const long v = ++source_.version[static_cast<std::size_t>(k)];
      try {
        cache.invalidate("k" + std::to_string(ids_[static_cast<std::size_t>(k)]));
        source_.invalidations[static_cast<std::size_t>(k)]++;
        long seen = source_.published[static_cast<std::size_t>(k)].load();
        while (v > seen &&
               !source_.published[static_cast<std::size_t>(k)].compare_exchange_weak(seen, v)) {
        }
      } catch (const cacheaside::Error&) {
        // An invalidate that throws did not return: no read is held to it. It is retried as
        // the next write of that key.
      }
      std::this_thread::sleep_for(20ms); // a write rate, not a synchronization
    }
  }

  Source source_;
  std::vector<int> ids_;
  int keys_;
  Clock::time_point epoch_;
  Tally tally_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

// Keeps the load running for d, then returns.
void run(std::chrono::milliseconds d) {
  std::this_thread::sleep_for(d);
}

int slotOf(const std::string& ns, int k) {
  return cacheaside::store::hashSlot(cacheaside::store::valueKey(ns, "k" + std::to_string(k)));
}

long commandCalls(int port, const std::string& command) {
  const std::string info = testsupport::adminCommand(port, {"INFO", "commandstats"});
  const std::string field = "cmdstat_" + command + ":calls=";
  const auto at = info.find(field);
  return at == std::string::npos ? 0 : std::stol(info.substr(at + field.size()));
}

} // namespace

TEST_CASE("cluster failover under load: no failed call, none past its bound, hits resume") {
  testsupport::RedisCluster cluster;
  HiredisClusterClient client(chaosClientOptions(cluster.seed()));
  const std::string ns = testsupport::uniqueNamespace("failover");
  constexpr int kKeys = 1000;
  const int victim = cluster.masterOf(slotOf(ns, 0), 0);
  REQUIRE(victim >= 0);
  const int watchedSlot = slotOf(ns, 0);
  std::vector<bool> onVictim(kKeys);
  for (int k = 0; k < kKeys; ++k) {
    onVictim[static_cast<std::size_t>(k)] = cluster.masterOf(slotOf(ns, k), 0) == victim;
  }
  const int other = (victim + 1) % testsupport::RedisCluster::kNodes;
  const auto epoch = Clock::now();
  std::vector<int> ids(kKeys);
  for (int k = 0; k < kKeys; ++k) {
    ids[static_cast<std::size_t>(k)] = k;
  }
  Load load(
      client, ns, ids, 8, [&](int k) { return onVictim[static_cast<std::size_t>(k)]; }, epoch);
  run(1500ms);

  const auto killedAt = Clock::now();
  cluster.node(victim).kill();
  // A replica takes over once the others agree the master failed (cluster-node-timeout 2000).
  const bool promoted = testsupport::eventually(
      [&] {
        const int master = cluster.masterOf(watchedSlot, other);
        return master >= 0 && master != victim;
      },
      30s);
  REQUIRE(promoted);
  REQUIRE(cluster.waitOk(30s));
  const auto okAt = Clock::now();
  load.watchFromNow();
  run(2000ms);
  cluster.node(victim).restart(); // rejoins as a replica of the promoted node
  REQUIRE(cluster.waitOk(30s));
  run(1000ms);
  load.stop();

  const Tally& t = load.tally();
  long extraLoads = 0;
  for (int k = 0; k < kKeys; ++k) {
    const auto i = static_cast<std::size_t>(k);
    extraLoads += std::max(0L, load.source().loads[i] - load.source().invalidations[i] - 1);
  }
  std::printf("failover: %ld calls, %ld failed, %ld stale, slowest %.1f ms (bound %lld ms), "
              "promoted %.1f s after SIGKILL, first hit on a moved slot %.1f ms after "
              "cluster_state:ok, %ld hits, %ld loads beyond one per invalidation, %llu map "
              "refreshes\n",
              t.calls.load(), t.failed.load(), t.stale.load(), t.slowestUs.load() / 1000.0,
              static_cast<long long>(kCallBound.count()),
              std::chrono::duration<double>(okAt - killedAt).count(),
              t.firstWatchedHitUs.load() / 1000.0, t.hits.load(), extraLoads,
              static_cast<unsigned long long>(client.mapRefreshes()));
  CHECK(t.calls > 1000);
  CHECK(t.failed == 0);
  CHECK(t.wrong == 0);
  CHECK(t.stale == 0);
  CHECK(t.slowestUs < std::chrono::duration_cast<std::chrono::microseconds>(kCallBound).count());
  CHECK(t.firstWatchedHitUs >= 0);
  CHECK(t.firstWatchedHitUs < 1000 * 1000);
}

TEST_CASE("cluster resharding under load: redirects followed, one load per key per change") {
  testsupport::RedisCluster cluster;
  HiredisClusterClient client(chaosClientOptions(cluster.seed()));
  const std::string ns = testsupport::uniqueNamespace("reshard");
  // 40 hot user keys, all in one slot: "k<i>" for the i whose slot is that of "k0".
  const int slot = slotOf(ns, 0);
  std::vector<int> hot;
  for (int k = 0; hot.size() < 40 && k < 50000000; ++k) {
    if (slotOf(ns, k) == slot) {
      hot.push_back(k);
    }
  }
  REQUIRE(hot.size() == 40);
  const int from = cluster.masterOf(slot, 0);
  int to = -1;
  // The target: a master other than the source (the master of slot 0 or 16383).
  for (int probe : {0, 8000, 16383}) {
    const int m = cluster.masterOf(probe, 0);
    if (m >= 0 && m != from) {
      to = m;
      break;
    }
  }
  REQUIRE(to >= 0);
  const auto epoch = Clock::now();
  Load load(
      client, ns, hot, 8, [](int) { return false; }, epoch);
  run(1000ms);
  const long movedBefore = static_cast<long>(client.mapRefreshes());

  const std::string slotText = std::to_string(slot);
  const std::string fromId = cluster.nodeId(from);
  const std::string toId = cluster.nodeId(to);
  CHECK(testsupport::adminCommand(cluster.port(to),
                                  {"CLUSTER", "SETSLOT", slotText, "IMPORTING", fromId}) == "OK");
  CHECK(testsupport::adminCommand(cluster.port(from),
                                  {"CLUSTER", "SETSLOT", slotText, "MIGRATING", toId}) == "OK");
  run(300ms); // readers meet the slot half-migrated: new keys ASK for the target
  // Keys move a few at a time while readers run, so some are on each side for a while.
  int moved = 0;
  for (int round = 0; round < 1000; ++round) {
    timeval tv{1, 0};
    redisContext* c = redisConnectWithTimeout("127.0.0.1", cluster.port(from), tv);
    REQUIRE((c != nullptr && c->err == 0));
    redisSetTimeout(c, tv);
    auto* r = static_cast<redisReply*>(redisCommand(c, "CLUSTER GETKEYSINSLOT %d 5", slot));
    REQUIRE(r != nullptr);
    std::vector<std::string> batch;
    for (std::size_t i = 0; i < r->elements; ++i) {
      batch.emplace_back(r->element[i]->str, r->element[i]->len);
    }
    freeReplyObject(r);
    for (const auto& key : batch) {
      auto* m = static_cast<redisReply*>(redisCommand(c, "MIGRATE 127.0.0.1 %d %b 0 5000 REPLACE",
                                                      cluster.port(to), key.data(), key.size()));
      if (m != nullptr) {
        freeReplyObject(m);
      }
      ++moved;
    }
    redisFree(c);
    if (batch.empty()) {
      break;
    }
    run(50ms);
  }
  for (int n = 0; n < testsupport::RedisCluster::kNodes; ++n) {
    testsupport::adminCommand(cluster.port(n), {"CLUSTER", "SETSLOT", slotText, "NODE", toId});
  }
  run(1500ms); // readers meet MOVED at the source and follow it
  load.stop();

  const Tally& t = load.tally();
  long duplicateLoads = 0;
  for (int k = 0; k < 40; ++k) {
    const auto i = static_cast<std::size_t>(k);
    duplicateLoads += std::max(0L, load.source().loads[i] - load.source().invalidations[i] - 1);
  }
  const long asking = commandCalls(cluster.port(to), "asking");
  std::printf("resharding: %ld calls, %ld failed, %ld stale, slowest %.1f ms, %d keys migrated, "
              "%ld ASKING at the target, %ld map refreshes, %ld loads beyond one per "
              "invalidation\n",
              t.calls.load(), t.failed.load(), t.stale.load(), t.slowestUs.load() / 1000.0, moved,
              asking, static_cast<long>(client.mapRefreshes()), duplicateLoads);
  CHECK(t.calls > 1000);
  CHECK(t.failed == 0);
  CHECK(t.wrong == 0);
  CHECK(t.stale == 0);
  CHECK(duplicateLoads == 0);
  CHECK(static_cast<long>(client.mapRefreshes()) > movedBefore); // MOVED from the source
  CHECK(t.slowestUs < std::chrono::duration_cast<std::chrono::microseconds>(kCallBound).count());
}

TEST_CASE("cluster with a password: every node's pool authenticates, a wrong password fails") {
  testsupport::RedisCluster cluster("cluster-secret");
  cacheaside::HiredisClusterOptions o = chaosClientOptions(cluster.seed());
  o.node.password = "cluster-secret";
  HiredisClusterClient client(o);
  CacheAside<std::string> cache(client, testsupport::cacheOptions("cluster-auth"));
  int loads = 0;
  for (int k = 0; k < 30; ++k) { // keys on every master
    cache.getOrLoad("k" + std::to_string(k), [&] {
      ++loads;
      return std::string("v");
    });
  }
  for (int k = 0; k < 30; ++k) {
    cache.getOrLoad("k" + std::to_string(k), [&] {
      ++loads;
      return std::string("v");
    });
  }
  CHECK(loads == 30); // the second round were hits: every node accepted the pool's AUTH
  CHECK(cache.stats().redisErrors == 0);

  o.node.password = "wrong";
  HiredisClusterClient refused(o);
  try {
    testsupport::cmd(refused, {"GET", "k"});
    FAIL("a wrong password was accepted");
  } catch (const cacheaside::ConnectionError& e) {
    CHECK(std::string(e.what()).find("AUTH failed") != std::string::npos);
  }
}
