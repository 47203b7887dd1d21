// Soft and hard expiry, fail-safe, XFetch and events, against a real redis-server.
#include "support/catch.hpp"
#include "support/sync.hpp"
#include "support/test_redis.hpp"

#include <cacheaside/cacheaside.hpp>
#include <cacheaside/hiredis_client.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using cacheaside::CacheAside;
using cacheaside::EventType;
using cacheaside::HiredisClient;
using namespace std::chrono_literals;

namespace {

struct DatabaseDown : std::runtime_error {
  DatabaseDown() : std::runtime_error("database down") {}
};

// Records the events of one cache.
struct EventLog {
  std::mutex mutex;
  std::vector<std::pair<EventType, std::string>> events;

  cacheaside::EventHandler handler() {
    return [this](const cacheaside::Event& e) {
      std::lock_guard<std::mutex> lock(mutex);
      events.emplace_back(e.type, std::string(e.key));
    };
  }
  int count(EventType type) {
    std::lock_guard<std::mutex> lock(mutex);
    int n = 0;
    for (const auto& e : events) {
      n += e.first == type ? 1 : 0;
    }
    return n;
  }
  void clear() {
    std::lock_guard<std::mutex> lock(mutex);
    events.clear();
  }
};

cacheaside::CacheOptions staleOptions(const std::string& prefix) {
  auto o = testsupport::cacheOptions(prefix);
  o.ttl = 300ms;
  o.ttlJitter = 0;
  o.staleWindow = 60s;
  o.xfetchBeta = 0; // these tests are about the stale window alone
  return o;
}

// Waits until the value at key has outlived its ttl and is inside its stale window.
void waitUntilStale(HiredisClient& client, const cacheaside::CacheOptions& o,
                    const std::string& key) {
  const std::string rk = cacheaside::store::valueKey(o.keyNamespace, key);
  REQUIRE(testsupport::eventually([&] {
    const long long pttl = testsupport::cmd(client, {"PTTL", rk}).integer;
    return pttl > 0 && pttl <= o.staleWindow.count();
  }));
}

} // namespace

TEST_CASE("a stale value is served at once while exactly one caller refreshes it") {
  HiredisClient client(testsupport::clientOptions());
  const auto options = staleOptions("swr");
  CacheAside<std::string> writer(client, options);
  writer.getOrLoad("k", [] { return std::string("v1"); });
  waitUntilStale(client, options, "k");

  // Eight instances (standing for processes) x four threads, released together.
  constexpr int kInstances = 8, kThreads = 4;
  std::vector<std::unique_ptr<CacheAside<std::string>>> caches;
  for (int i = 0; i < kInstances; ++i) {
    caches.push_back(std::make_unique<CacheAside<std::string>>(client, options));
  }
  std::atomic<int> loads{0}, gotStale{0}, gotFresh{0};
  testsupport::Latch start(kInstances * kThreads), refreshing(1), release(1);
  std::vector<std::thread> threads;
  for (int i = 0; i < kInstances * kThreads; ++i) {
    threads.emplace_back([&, i] {
      start.arriveAndWait();
      const std::string v = caches[static_cast<std::size_t>(i % kInstances)]->getOrLoad("k", [&] {
        ++loads;
        refreshing.countDown();
        release.wait();
        return std::string("v2");
      });
      ++(v == "v1" ? gotStale : gotFresh);
    });
  }
  refreshing.wait();
  // Everyone but the refresher returns without waiting for it.
  REQUIRE(testsupport::eventually([&] { return gotStale == kInstances * kThreads - 1; }));
  release.countDown();
  for (auto& t : threads) {
    t.join();
  }
  CHECK(loads == 1);
  CHECK(gotFresh == 1);
  std::uint64_t staleServed = 0, refreshes = 0;
  for (const auto& c : caches) {
    staleServed += c->stats().staleServed;
    refreshes += c->stats().refreshes;
  }
  CHECK(staleServed == kInstances * kThreads - 1);
  CHECK(refreshes == 1);
  int more = 0;
  CHECK(caches[0]->getOrLoad("k", [&] {
    ++more;
    return std::string("v3");
  }) == "v2");
  CHECK(more == 0);
}

TEST_CASE("freshness comes from the server's clock: caches with clocks minutes apart agree") {
  HiredisClient client(testsupport::clientOptions());
  EventLog fastLog, slowLog;
  auto fastOptions = staleOptions("clocks");
  auto slowOptions = fastOptions;
  fastOptions.clock = [] { return std::chrono::steady_clock::now() + 10min; };
  slowOptions.clock = [] { return std::chrono::steady_clock::now() - 10min; };
  fastOptions.onEvent = fastLog.handler();
  slowOptions.onEvent = slowLog.handler();
  CacheAside<std::string> fast(client, fastOptions);
  CacheAside<std::string> slow(client, slowOptions);
  fast.getOrLoad("k", [] { return std::string("v1"); });
  fastLog.clear();
  CHECK(slow.getOrLoad("k", [] { return std::string("unused"); }) == "v1");
  CHECK(fast.getOrLoad("k", [] { return std::string("unused"); }) == "v1");
  CHECK(slowLog.count(EventType::Hit) == 1);
  CHECK(fastLog.count(EventType::Hit) == 1);
  CHECK(slowLog.count(EventType::StaleServed) + slowLog.count(EventType::Refresh) == 0);
  CHECK(fastLog.count(EventType::StaleServed) + fastLog.count(EventType::Refresh) == 0);

  waitUntilStale(client, fastOptions, "k");
  testsupport::Latch refreshing(1), release(1);
  std::thread refresher([&] {
    slow.getOrLoad("k", [&] {
      refreshing.countDown();
      release.wait();
      return std::string("v2");
    });
  });
  refreshing.wait();
  CHECK(fast.getOrLoad("k", [] { return std::string("unused"); }) == "v1");
  release.countDown();
  refresher.join();
  CHECK(slowLog.count(EventType::Refresh) == 1);     // the slow clock saw it stale and refreshed
  CHECK(fastLog.count(EventType::StaleServed) == 1); // the fast clock saw it stale too
}

TEST_CASE("a failing refresh serves the stale value and is throttled across callers") {
  HiredisClient client(testsupport::clientOptions());
  EventLog log;
  auto options = staleOptions("failsafe");
  options.failSafeThrottle = 500ms;
  options.onEvent = log.handler();
  CacheAside<std::string> cache(client, options);
  cache.getOrLoad("k", [] { return std::string("last good"); });
  waitUntilStale(client, options, "k");

  std::atomic<int> loaderCalls{0}, served{0}, wrong{0}, failed{0};
  const auto until = std::chrono::steady_clock::now() + 2s;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      while (std::chrono::steady_clock::now() < until) {
        try {
          const std::string v = cache.getOrLoad("k", [&]() -> std::string {
            ++loaderCalls;
            throw DatabaseDown();
          });
          ++(v == "last good" ? served : wrong);
        } catch (...) {
          ++failed;
        }
        std::this_thread::sleep_for(1ms);
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  std::printf("fail-safe: %d loader calls in 2 s of failure (throttle 500 ms), %d calls served\n",
              loaderCalls.load(), served.load());
  CHECK(failed == 0);
  CHECK(wrong == 0);
  CHECK(served > 100);
  CHECK(loaderCalls >= 2); // it does try again after the throttle
  CHECK(loaderCalls <= 6); // 2 s / 500 ms, plus the first, plus one of slack
  CHECK(cache.stats().failSafes == static_cast<std::uint64_t>(loaderCalls.load()));
  CHECK(log.count(EventType::FailSafe) == loaderCalls.load());
}

TEST_CASE("without a stale value a loader's exception still reaches the caller") {
  HiredisClient client(testsupport::clientOptions());
  CacheAside<std::string> cache(client, staleOptions("nostale"));
  CHECK_THROWS_AS(cache.getOrLoad("k", []() -> std::string { throw DatabaseDown(); }),
                  DatabaseDown);
  CHECK(cache.stats().failSafes == 0);
}

// XFetch refreshes when the remaining TTL t <= -load * beta * ln(rand): a read at t triggers with
// probability exp(-t / load). With r reads/s and a 100 ms load, a cycle expires unrefreshed only
// if no read in the last ~load triggers: about exp(-r * 0.1 / e), 2.5% at r = 100 (one thread
// reading every 10 ms, far below what even TSan on a busy 2-core machine does with 1 ms pauses),
// e^-37 at r = 1000. In at most 12 cycles, three or more expiries have probability < 0.4% at
// r = 100.
// The first trigger comes ~load * ln(r * load) before expiry (0.2-0.8 s for r in 100-10000), so a
// 2 s TTL gives 1.1-1.8 refreshes per TTL; the bounds below leave room either side.
TEST_CASE("XFetch refreshes a hot entry before it expires, about once per TTL") {
  HiredisClient client(testsupport::clientOptions());
  auto options = testsupport::cacheOptions("xfetch");
  options.ttl = 2s;
  options.ttlJitter = 0;
  options.xfetchBeta = 1.0;
  CacheAside<int> cache(client, options);
  std::atomic<int> version{0};
  const auto load = [&] {
    std::this_thread::sleep_for(100ms);
    return ++version;
  };
  cache.getOrLoad("hot", load);
  const auto started = std::chrono::steady_clock::now();
  const auto until = started + 14s;
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&] {
      while (std::chrono::steady_clock::now() < until) {
        cache.getOrLoad("hot", load);
        std::this_thread::sleep_for(1ms); // hundreds of reads/s, not a busy loop
      }
    });
  }
  for (auto& t : readers) {
    t.join();
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const auto s = cache.stats();
  const double expiries = static_cast<double>(s.misses - 1); // the first miss filled the cache
  const double ttls = seconds / std::chrono::duration<double>(options.ttl).count();
  const double refreshesPerTtl = static_cast<double>(s.refreshes) / ttls;
  std::printf("XFetch: %.1f s, %llu hits (%.0f/s), %llu early refreshes, %.0f expiries before a "
              "refresh, %.2f refreshes per TTL\n",
              seconds, static_cast<unsigned long long>(s.hits),
              static_cast<double>(s.hits) / seconds, static_cast<unsigned long long>(s.refreshes),
              expiries, refreshesPerTtl);
  CHECK(expiries <= 2);
  // One load per cycle: no two callers ever refreshed the same value.
  CHECK(s.loads == s.refreshes + s.misses);
  CHECK(static_cast<std::uint64_t>(version.load()) == s.loads);
  CHECK(refreshesPerTtl >= 0.6); // refreshed about once per TTL
  CHECK(refreshesPerTtl <= 3.0); // and not far more often
}

TEST_CASE("events report hits, misses and decode failures with the user key") {
  HiredisClient client(testsupport::clientOptions());
  EventLog log;
  auto options = testsupport::cacheOptions("events");
  options.onEvent = log.handler();
  CacheAside<int> cache(client, options);
  cache.getOrLoad("k", [] { return 1; });
  cache.getOrLoad("k", [] { return 1; });
  testsupport::cmd(client,
                   {"SET", cacheaside::store::valueKey(options.keyNamespace, "bad"), "junk"});
  cache.getOrLoad("bad", [] { return 2; });
  CHECK(log.count(EventType::Miss) == 2);
  CHECK(log.count(EventType::Hit) == 1);
  CHECK(log.count(EventType::DecodeFailure) == 1);
  std::lock_guard<std::mutex> lock(log.mutex);
  CHECK(log.events.front().second == "k");
}

TEST_CASE("a set() while a refresh loads fences the refresh") {
  HiredisClient client(testsupport::clientOptions());
  const auto options = staleOptions("set-fence");
  CacheAside<std::string> cache(client, options);
  CacheAside<std::string> writer(client, options);
  cache.getOrLoad("k", [] { return std::string("v1"); });
  waitUntilStale(client, options, "k");
  testsupport::Latch refreshing(1), release(1);
  std::thread refresher([&] {
    cache.getOrLoad("k", [&] {
      refreshing.countDown();
      release.wait();
      return std::string("read before the write");
    });
  });
  refreshing.wait();
  CHECK(writer.set("k", "written through"));
  release.countDown();
  refresher.join();
  CHECK(cache.stats().fencedWrites == 1);
  CHECK(cache.get("k") == std::optional<std::string>("written through"));
}

namespace {
// Forwards to a real client, but holds the first call that runs `script` until released: a way
// to stop one caller between two round trips.
class GatedClient final : public cacheaside::RedisClient {
public:
  GatedClient(cacheaside::RedisClient& inner, const cacheaside::Script& script)
      : inner_(inner), sha1_(script.sha1()) {}
  cacheaside::Reply command(const cacheaside::Command& command) override {
    gate({command});
    return inner_.command(command);
  }
  std::vector<cacheaside::Reply>
  pipeline(const std::vector<cacheaside::Command>& commands) override {
    gate(commands);
    return inner_.pipeline(commands);
  }
  testsupport::Latch held{1}, open{1};

private:
  void gate(const std::vector<cacheaside::Command>& commands) {
    if (!commands.empty() && commands[0].argv.size() > 1 && commands[0].argv[1] == sha1_ &&
        !gated_.exchange(true)) {
      held.countDown();
      open.wait();
    }
  }

  cacheaside::RedisClient& inner_;
  std::string sha1_;
  std::atomic<bool> gated_{false};
};
} // namespace

TEST_CASE("a caller that saw a value stale does not refresh it again after someone else did") {
  HiredisClient client(testsupport::clientOptions());
  const auto options = staleOptions("late-refresh");
  GatedClient gated(client, cacheaside::store::scripts::takeRefresh()); // the refresh lease
  CacheAside<std::string> late(gated, options);
  CacheAside<std::string> first(client, options);
  first.getOrLoad("k", [] { return std::string("v1"); });
  waitUntilStale(client, options, "k");
  int lateLoads = 0;
  std::string lateGot;
  std::thread t([&] {
    lateGot = late.getOrLoad("k", [&] {
      ++lateLoads;
      return std::string("late reload");
    });
  });
  gated.held.wait(); // `late` has read v1 as stale and is about to take the refresh lease
  CHECK(first.getOrLoad("k", [] { return std::string("v2"); }) == "v2"); // refreshed meanwhile
  gated.open.countDown();
  t.join();
  CHECK(lateLoads == 0);
  CHECK(lateGot == "v1");
  CHECK(late.stats().refreshes == 0);
  const std::string lk = cacheaside::store::keysFor(options.keyNamespace, "k").refreshLease;
  CHECK(testsupport::cmd(client, {"EXISTS", lk}).integer == 0); // taken and given back
  CHECK(first.get("k") == std::optional<std::string>("v2"));
}
