// The promises at the edges: a Redis failure between send and reply, an invalidation while a
// load is coalesced, fork() with calls in flight, a value expiring under its refresh, and a
// loader that reads its own key. Faults are injected at the client boundary over a real Redis:
// the command runs, and its reply is lost or replaced.
#include "support/catch.hpp"
#include "support/sync.hpp"
#include "support/test_redis.hpp"

#include <cacheaside/cacheaside.hpp>
#include <cacheaside/hiredis_client.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <functional>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using cacheaside::CacheAside;
using cacheaside::Command;
using cacheaside::HiredisClient;
using cacheaside::Reply;
using namespace std::chrono_literals;
namespace scripts = cacheaside::store::scripts;

namespace {
using Clock = std::chrono::steady_clock;

bool isLookup(const Command& c) {
  return !c.argv.empty() && c.argv[0] == "SET";
}
bool runsScript(const Command& c, const cacheaside::Script& s) {
  return c.argv.size() > 1 && c.argv[0] == "EVALSHA" && c.argv[1] == s.sha1();
}

// Forwards to a real client. The first call whose first command matches `when` is sent and
// run by Redis, but its reply is lost (TimeoutError), or replaced by an error reply without
// being sent.
class FaultyClient final : public cacheaside::RedisClient {
public:
  enum class Fault { LoseReply, ErrorReply };
  FaultyClient(cacheaside::RedisClient& inner, std::function<bool(const Command&)> when,
               Fault fault)
      : inner_(inner), when_(std::move(when)), fault_(fault) {}
  Reply command(const Command& command) override { return pipeline({command}).front(); }
  std::vector<Reply> pipeline(const std::vector<Command>& commands) override {
    if (commands.empty() || !when_(commands.front()) || fired_.exchange(true)) {
      return inner_.pipeline(commands);
    }
    if (fault_ == Fault::ErrorReply) {
      Reply oom;
      oom.type = Reply::Type::Error;
      oom.str = "OOM command not allowed when used memory > 'maxmemory'.";
      return std::vector<Reply>(commands.size(), oom);
    }
    inner_.pipeline(commands);
    throw cacheaside::TimeoutError("injected: the reply was lost");
  }
  bool fired() const { return fired_; }

private:
  cacheaside::RedisClient& inner_;
  std::function<bool(const Command&)> when_;
  Fault fault_;
  std::atomic<bool> fired_{false};
};

cacheaside::CacheOptions leaseOptions(const std::string& prefix) {
  auto o = testsupport::cacheOptions(prefix);
  o.lockTtl = 10s;   // a lease left behind would block others for this long
  o.waitBudget = 3s; // ... and each of them would wait this long
  o.ttlJitter = 0;
  return o;
}

template <typename F> std::chrono::milliseconds timed(F&& f) {
  const auto start = Clock::now();
  f();
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
}
} // namespace

TEST_CASE("a lease whose lookup reply was lost is released once Redis answers: no one waits") {
  HiredisClient client(testsupport::clientOptions());
  const auto options = leaseOptions("lost-lookup");
  FaultyClient faulty(client, isLookup, FaultyClient::Fault::LoseReply);
  CacheAside<std::string> unlucky(faulty, options);
  CacheAside<std::string> other(client, options);

  CHECK(unlucky.getOrLoad("k", [] { return std::string("loaded uncached"); }) == "loaded uncached");
  REQUIRE(faulty.fired());
  CHECK(unlucky.stats().orphanedLeases == 1);
  std::string got;
  const auto took = timed([&] { got = other.getOrLoad("k", [] { return std::string("v"); }); });
  CHECK(got == "v");
  CHECK(took < 2s); // without the release: the whole 3 s wait budget
  CHECK(other.get("k") == std::optional<std::string>("v")); // and cached, not loaded uncached
}

TEST_CASE("a fill answered with an error reply gives its lease up: no one waits") {
  HiredisClient client(testsupport::clientOptions());
  const auto options = leaseOptions("refused-fill");
  FaultyClient faulty(
      client, [](const Command& c) { return runsScript(c, scripts::fill()); },
      FaultyClient::Fault::ErrorReply);
  CacheAside<std::string> unlucky(faulty, options);
  CacheAside<std::string> other(client, options);

  CHECK(unlucky.getOrLoad("k", [] { return std::string("not written"); }) == "not written");
  REQUIRE(faulty.fired());
  std::string got;
  const auto took = timed([&] { got = other.getOrLoad("k", [] { return std::string("v"); }); });
  CHECK(got == "v");
  CHECK(took < 2s);
}

TEST_CASE("a call that starts after invalidate returned never gets a value loaded before it") {
  HiredisClient client(testsupport::clientOptions());
  CacheAside<std::string> cache(client, testsupport::cacheOptions("read-your-writes"));
  std::atomic<int> version{1};
  testsupport::Latch loading(1), release(1);
  std::string first;
  std::thread before([&] {
    first = cache.getOrLoad("k", [&] {
      const std::string v = "v" + std::to_string(version.load());
      loading.countDown();
      release.wait(); // the write and its invalidation happen during this load
      return v;
    });
  });
  loading.wait();
  version = 2;           // the write commits...
  cache.invalidate("k"); // ...and is invalidated
  std::atomic<bool> afterDone{false};
  std::string after;
  std::thread late([&] {
    after = cache.getOrLoad("k", [&] { return "v" + std::to_string(version.load()); });
    afterDone = true;
  });
  // The later call must not join the load from before the write: it finishes on its own.
  const bool finishedAlone = testsupport::eventually([&] { return afterDone.load(); }, 10s);
  release.countDown();
  before.join();
  late.join();
  CHECK(finishedAlone);
  CHECK(after == "v2");
  CHECK(first == "v1"); // started before the write: allowed, and not written back
  CHECK(cache.get("k") == std::optional<std::string>("v2"));
}

TEST_CASE("a caller that joined a load fenced by another process's invalidation looks again") {
  HiredisClient client(testsupport::clientOptions());
  const auto options = testsupport::cacheOptions("fenced-join");
  CacheAside<std::string> reader(client, options);
  CacheAside<std::string> writer(client, options); // another process
  std::atomic<int> version{1};
  testsupport::Latch loading(1), release(1);
  std::string first;
  std::thread before([&] {
    first = reader.getOrLoad("k", [&] {
      const std::string v = "v" + std::to_string(version.load());
      loading.countDown();
      release.wait();
      return v;
    });
  });
  loading.wait();
  version = 2;
  writer.invalidate("k"); // the write, invalidated in the other process
  std::string after;
  std::thread late(
      [&] { after = reader.getOrLoad("k", [&] { return "v" + std::to_string(version.load()); }); });
  REQUIRE(testsupport::eventually([&] { return reader.stats().coalesced == 1; }));
  release.countDown(); // the load ends; its write-back is fenced
  before.join();
  late.join();
  CHECK(first == "v1");
  CHECK(after == "v2");
}

TEST_CASE("a caller that joined a load too large to cache looks again after an invalidation") {
  HiredisClient client(testsupport::clientOptions());
  auto options = testsupport::cacheOptions("unwritten-join");
  options.maxValueBytes = 64; // nothing is written back: no fill can be fenced
  CacheAside<std::string> reader(client, options);
  CacheAside<std::string> writer(client, options); // another process
  const std::string big(100, 'x');
  std::atomic<int> version{1};
  testsupport::Latch loading(1), release(1);
  std::string first;
  std::thread before([&] {
    first = reader.getOrLoad("k", [&] {
      const std::string v = std::to_string(version.load()) + big;
      loading.countDown();
      release.wait();
      return v;
    });
  });
  loading.wait();
  version = 2;
  writer.invalidate("k");
  std::string after;
  std::thread late(
      [&] { after = reader.getOrLoad("k", [&] { return std::to_string(version.load()) + big; }); });
  REQUIRE(testsupport::eventually([&] { return reader.stats().coalesced == 1; }));
  release.countDown();
  before.join();
  late.join();
  CHECK(first == "1" + big);
  CHECK(after == "2" + big);
  CHECK(reader.stats().oversizedValues >= 2);
}

// Forwards to a real client; the first lookup runs on Redis, then its reply is held back until
// release() (a read in flight).
class HoldingClient final : public cacheaside::RedisClient {
public:
  explicit HoldingClient(cacheaside::RedisClient& inner) : inner_(inner) {}
  Reply command(const Command& command) override { return pipeline({command}).front(); }
  std::vector<Reply> pipeline(const std::vector<Command>& commands) override {
    std::vector<Reply> replies = inner_.pipeline(commands);
    // The first lookup that read the key: not one Redis 6 refused (SET ... GET), nor a script
    // not yet loaded.
    if (!commands.empty() && looksUp(commands.front()) && !replies.front().isError() &&
        !held_.exchange(true)) {
      read.countDown();
      released_.wait();
    }
    return replies;
  }
  void release() { released_.countDown(); }
  testsupport::Latch read{1}; ///< counted down once the held lookup has run on Redis

private:
  // The peek (GET), SET ... NX ... GET, or the scripted lookup of Redis < 7 (by SHA-1 or by
  // source).
  static bool looksUp(const Command& c) {
    const cacheaside::Script& scripted = scripts::lookup();
    return isLookup(c) || c.argv.front() == "GET" || runsScript(c, scripted) ||
           (c.argv.size() > 1 && c.argv[0] == "EVAL" && c.argv[1] == scripted.source());
  }

  cacheaside::RedisClient& inner_;
  std::atomic<bool> held_{false};
  testsupport::Latch released_{1};
};

TEST_CASE(
    "a caller that starts after another process's invalidation does not share an older read") {
  HiredisClient client(testsupport::clientOptions());
  const auto options = testsupport::cacheOptions("read-in-flight");
  HoldingClient holding(client);
  CacheAside<std::string> reader(holding, options);
  CacheAside<std::string> writer(client, options); // another process
  REQUIRE(writer.getOrLoad("k", [] { return std::string("v1"); }) == "v1");
  std::string first;
  std::thread before([&] { first = reader.getOrLoad("k", [] { return std::string("v?"); }); });
  holding.read.wait();    // the first caller's lookup has read v1; its reply is in flight
  writer.invalidate("k"); // the write v2, invalidated in the other process
  std::atomic<bool> afterDone{false};
  std::string after;
  std::thread late([&] {
    after = reader.getOrLoad("k", [] { return std::string("v2"); });
    afterDone = true;
  });
  // Sharing the read in flight would make it wait for that read (and get v1).
  const bool finishedAlone = testsupport::eventually(
      [&] { return afterDone.load() || reader.stats().coalesced > 0; }, 10s);
  holding.release();
  before.join();
  late.join();
  CHECK(finishedAlone);
  CHECK(reader.stats().coalesced == 0);
  CHECK(first == "v1"); // started before the invalidation: allowed
  CHECK(after == "v2");
}

TEST_CASE("a loader that reads its own key gets an exception, not a deadlock") {
  HiredisClient client(testsupport::clientOptions());
  CacheAside<std::string> cache(client, testsupport::cacheOptions("reentrant"));
  std::atomic<bool> done{false};
  std::string what;
  std::thread t([&] {
    try {
      cache.getOrLoad("k", [&] { return cache.getOrLoad("k", [] { return std::string("x"); }); });
    } catch (const cacheaside::Error& e) {
      what = e.what();
    }
    done = true;
  });
  const bool returned = testsupport::eventually([&] { return done.load(); }, 10s);
  if (!returned) {
    t.detach(); // deadlocked: nothing to join
  } else {
    t.join();
  }
  REQUIRE(returned);
  CHECK(what.find("inside its own load") != std::string::npos);
  CHECK(cache.inFlight() == 0);
}

TEST_CASE("a refresh keeps its value alive: no second load when the TTL ends mid-refresh") {
  HiredisClient client(testsupport::clientOptions());
  auto options = testsupport::cacheOptions("refresh-alive");
  options.ttl = 100ms;
  options.staleWindow = 300ms; // in Redis for 400 ms; stale after 100 ms: a refresh is certain
  options.ttlJitter = 0;
  CacheAside<std::string> refresher(client, options);
  CacheAside<std::string> other(client, options); // another process
  refresher.getOrLoad("k", [] { return std::string("v1"); });
  const auto written = Clock::now();
  const std::string key = cacheaside::store::valueKey(options.keyNamespace, "k");
  REQUIRE(testsupport::eventually([&] {
    const long long left = testsupport::cmd(client, {"PTTL", key}).integer;
    return left >= 0 && left <= 300; // stale
  }));
  testsupport::Latch loading(1), release(1);
  std::thread t([&] {
    refresher.getOrLoad("k", [&] {
      loading.countDown();
      release.wait();
      return std::string("v2");
    });
  });
  loading.wait();
  // Let the value's own 400 ms run out (with a wide margin) while the refresh still loads.
  REQUIRE(testsupport::eventually([&] { return Clock::now() > written + 1200ms; }));
  std::atomic<int> otherLoads{0};
  const std::string seen = other.getOrLoad("k", [&] {
    ++otherLoads;
    return std::string("second load");
  });
  release.countDown();
  t.join();
  CHECK(otherLoads == 0);
  CHECK(seen == "v1");
  CHECK(other.get("k") == std::optional<std::string>("v2"));
}

TEST_CASE("a forked child starts with none of its parent's calls in flight") {
  HiredisClient client(testsupport::clientOptions());
  auto options = testsupport::cacheOptions("fork");
  options.waitBudget = 200ms;
  CacheAside<std::string> cache(client, options);
  testsupport::Latch loading(1), release(1);
  std::thread parentLoad([&] {
    cache.getOrLoad("k", [&] {
      loading.countDown();
      release.wait();
      return std::string("parent");
    });
  });
  loading.wait();
  REQUIRE(cache.inFlight() == 1);
  const pid_t child = ::fork();
  if (child == 0) {
    // The parent's flight has no thread here: joining it would wait forever.
    int code = cache.inFlight() == 0 ? 0 : 10;
    if (code == 0) {
      alarm(20); // a hang ends the child, and the parent sees it
      const std::string got = cache.getOrLoad("k", [] { return std::string("child"); });
      code = got == "child" ? 0 : 11;
    }
    std::_Exit(code);
  }
  REQUIRE(child > 0);
  int status = 0;
  const bool exited =
      testsupport::eventually([&] { return ::waitpid(child, &status, WNOHANG) == child; }, 30s);
  if (!exited) {
    ::kill(child, SIGKILL);
    ::waitpid(child, &status, 0);
  }
  release.countDown();
  parentLoad.join();
  REQUIRE(exited);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
