// Near-cache coherence across processes, under faults. One writer process updates a source of
// truth (its own redis-server) and invalidates through the cache, or deletes the cache's key
// with redis-cli; three reader processes, three threads each with its own near-cached
// CacheAside, read all the time. The orchestrator kills the feeds (CLIENT KILL TYPE pubsub) and
// restarts the cache's redis-server, and calls quiet points: the writer stops, every reader's
// feed confirms it has reported everything since, and then every reader cache must return the
// source's current value for every key.
//
// Checked on every read served by the near tier: it is not older than a version whose
// invalidation that process had seen (the superseding write's invalidate returned before the
// process's feed confirmed, by heartbeat, that it had reported everything). Reads from Redis: not
// older than a version superseded more than a second before the read began.
//
// Usage: near_coherence [--seconds N]   (exit 0 when every check held)
#include "support/redis_server.hpp"

#include <cacheaside/cache_aside.hpp>
#include <cacheaside/hiredis_client.hpp>
#include <cacheaside/near/hiredis_feed.hpp>

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr int kKeys = 16;
constexpr int kRing = 64;
constexpr int kReaders = 3;
constexpr int kThreads = 3;
constexpr const char* kNamespace = "coherence";

std::int64_t nowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

struct Shared {
  std::atomic<std::int64_t> published[kKeys];
  std::atomic<std::int64_t> publishedAt[kKeys][kRing]; // when version v was published, at v % kRing
  std::atomic<int> stop;
  std::atomic<int> quiet;                    // orchestrator: writer, stop writing
  std::atomic<std::int64_t> writerIdleSince; // writer: stopped (all published) since; 0 busy
  std::atomic<std::int64_t> confirmed[kReaders];
  std::atomic<int> checkRound;
  std::atomic<int> checksDone; // reader threads that finished the current round
  std::atomic<std::int64_t> reads, nearHits, writes, cliWrites, nearViolations, redisViolations,
      quietChecks, quietMismatches, feedDowns, readerErrors;
  std::atomic<std::int64_t> firstViolation[4]; // key, got, superseded-by published at, read start
};

Shared* shared = nullptr;

cacheaside::HiredisOptions redisOptions(int port) {
  cacheaside::HiredisOptions o;
  o.port = port;
  o.connectTimeout = 500ms;
  o.commandTimeout = 1s;
  o.poolWaitTimeout = 1s;
  o.poolSize = 8;
  return o;
}

std::string keyName(int k) {
  return "k" + std::to_string(k);
}

// Remembers what the process's feed confirmed, for the per-read check.
struct Confirmations final : cacheaside::near::InvalidationListener {
  explicit Confirmations(int reader) : reader_(reader) {}
  void invalidated(std::string_view) override {}
  void flushed() override {}
  void up() override {}
  void down() override { shared->feedDowns.fetch_add(1); }
  void confirmed(Clock::time_point asOf) override {
    shared->confirmed[reader_].store(
        std::chrono::duration_cast<std::chrono::nanoseconds>(asOf.time_since_epoch()).count());
  }
  int reader_;
};

void writer(int cachePort, int sourcePort) {
  cacheaside::HiredisClient cacheClient(redisOptions(cachePort));
  cacheaside::HiredisClient source(redisOptions(sourcePort));
  cacheaside::CacheOptions o;
  o.keyNamespace = kNamespace;
  cacheaside::CacheAside<std::string> cache(cacheClient, o);
  std::mt19937 rng(7);
  while (shared->stop.load() == 0) {
    if (shared->quiet.load() != 0) {
      shared->writerIdleSince.store(nowNs());
      while (shared->quiet.load() != 0 && shared->stop.load() == 0) {
        std::this_thread::sleep_for(1ms);
      }
      shared->writerIdleSince.store(0);
      continue;
    }
    const int k = static_cast<int>(rng() % kKeys);
    const std::string src = "src:" + keyName(k);
    std::int64_t version = -1;
    while (version < 0 && shared->stop.load() == 0) {
      try {
        const auto r = source.command({src, {"INCR", src}});
        version = r.integer;
      } catch (const std::exception&) {
        std::this_thread::sleep_for(10ms);
      }
    }
    const bool viaCli = shared->writes.load() % 5 == 4;
    // Until the cache's copy is gone: a write whose invalidation failed is retried, not
    // published (the README's non-guarantee: the old value may live until its TTL).
    for (bool done = false; !done && shared->stop.load() == 0;) {
      if (viaCli) {
        const std::string command = "redis-cli -p " + std::to_string(cachePort) + " DEL '" +
                                    cacheaside::store::valueKey(kNamespace, keyName(k)) +
                                    "' >/dev/null 2>&1";
        done = std::system(command.c_str()) == 0;
      } else {
        try {
          cache.invalidate(keyName(k));
          done = true;
        } catch (const std::exception&) {
        }
      }
      if (!done) {
        std::this_thread::sleep_for(10ms);
      }
    }
    shared->publishedAt[k][version % kRing].store(nowNs());
    std::int64_t prev = shared->published[k].load();
    while (version > prev && !shared->published[k].compare_exchange_weak(prev, version)) {
    }
    shared->writes.fetch_add(1);
    if (viaCli) {
      shared->cliWrites.fetch_add(1);
    }
    std::this_thread::sleep_for(2ms); // a write rate the readers' checks can follow
  }
}

void reader(int index, int cachePort, int sourcePort) {
  cacheaside::HiredisClient cacheClient(redisOptions(cachePort));
  cacheaside::near::HiredisFeedOptions fo;
  fo.redis = redisOptions(cachePort);
  fo.namespaces = {kNamespace};
  fo.pingInterval = 50ms;
  fo.lagLimit = 250ms;
  fo.reconnectPause = 50ms;
  auto feed = std::make_shared<cacheaside::near::HiredisInvalidationFeed>(fo);
  Confirmations confirmations(index);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      cacheaside::HiredisClient source(redisOptions(sourcePort));
      cacheaside::CacheOptions o;
      o.keyNamespace = kNamespace;
      o.ttl = 60s;
      o.nearCache.feed = feed;
      o.nearCache.maxFeedSilence = 1s;
      o.nearCache.maxTtl = 60s;
      cacheaside::CacheAside<std::string> cache(cacheClient, o);
      std::mt19937 rng(static_cast<unsigned>(index * 100 + t));
      int round = 0;
      while (shared->stop.load() == 0) {
        if (shared->checkRound.load() != round) {
          round = shared->checkRound.load();
          for (int k = 0; k < kKeys; ++k) {
            const std::string src = "src:" + keyName(k);
            const auto truth = source.command({src, {"GET", src}});
            const std::string expected = truth.isNil() ? "0" : truth.str;
            const std::string got = cache.getOrLoad(keyName(k), [&] { return expected; });
            shared->quietChecks.fetch_add(1);
            if (got != expected) {
              shared->quietMismatches.fetch_add(1);
              std::fprintf(stderr, "quiet point %d: reader %d.%d key %d holds %s, source %s\n",
                           round, index, t, k, got.c_str(), expected.c_str());
            }
          }
          shared->checksDone.fetch_add(1);
          continue;
        }
        // Skewed: the first four keys take most reads, so that the near tier serves them.
        const int k = static_cast<int>(rng() % 4 == 0 ? rng() % kKeys : rng() % 4);
        const std::int64_t confirmedAtStart = shared->confirmed[index].load();
        const std::int64_t start = nowNs();
        const std::int64_t publishedAtStart = shared->published[k].load();
        const auto hitsBefore = cache.nearStats().hits;
        std::int64_t got = 0;
        try {
          const std::string v = cache.getOrLoad(keyName(k), [&] {
            const std::string src = "src:" + keyName(k);
            const auto r = source.command({src, {"GET", src}});
            return r.isNil() ? std::string("0") : r.str;
          });
          got = std::stoll(v);
        } catch (const std::exception& e) {
          shared->readerErrors.fetch_add(1);
          continue;
        }
        const bool near = cache.nearStats().hits > hitsBefore;
        shared->reads.fetch_add(1);
        if (near) {
          shared->nearHits.fetch_add(1);
        }
        std::this_thread::sleep_for(100us); // leaves the 2 cores some room for the writer
        if (got >= publishedAtStart) {
          continue;
        }
        // The write that superseded what was read: when its invalidation was published.
        const std::int64_t supersededAt = publishedAtStart - (got + 1) < kRing
                                              ? shared->publishedAt[k][(got + 1) % kRing].load()
                                              : 0;
        const bool nearBad = near && supersededAt < confirmedAtStart;
        const bool redisBad = !near && supersededAt + 1'000'000'000 < start;
        if (nearBad || redisBad) {
          (nearBad ? shared->nearViolations : shared->redisViolations).fetch_add(1);
          std::int64_t none = 0;
          if (shared->firstViolation[3].compare_exchange_strong(none, start)) {
            shared->firstViolation[0].store(k);
            shared->firstViolation[1].store(got);
            shared->firstViolation[2].store(supersededAt);
          }
        }
      }
    });
  }
  feed->attach(cacheaside::near::trackingPrefix(kNamespace), confirmations);
  for (auto& th : threads) {
    th.join();
  }
  feed->detach(confirmations);
}

template <typename Pred> bool waitFor(Pred pred, std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  while (!pred()) {
    if (Clock::now() > deadline) {
      return false;
    }
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// The writer stops; every reader's feed confirms a heartbeat sent after that; every reader
// thread compares each key with the source.
bool quietPoint(int round) {
  shared->quiet.store(1);
  bool ok = waitFor([] { return shared->writerIdleSince.load() != 0; }, 30s);
  const std::int64_t idle = shared->writerIdleSince.load();
  ok = ok && waitFor(
                 [idle] {
                   for (int r = 0; r < kReaders; ++r) {
                     if (shared->confirmed[r].load() <= idle) {
                       return false;
                     }
                   }
                   return true;
                 },
                 30s);
  if (ok) {
    shared->checksDone.store(0);
    shared->checkRound.store(round);
    ok = waitFor([] { return shared->checksDone.load() >= kReaders * kThreads; }, 30s);
  }
  shared->quiet.store(0);
  if (!ok) {
    std::fprintf(stderr, "quiet point %d did not complete\n", round);
  }
  return ok;
}

int orchestrate(int seconds) {
  testsupport::RedisServer cacheRedis;
  testsupport::RedisServer sourceRedis;
  std::fflush(stdout);
  std::fflush(stderr);
  std::vector<pid_t> children;
  for (int p = 0; p <= kReaders; ++p) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      std::perror("fork");
      return 2;
    }
    if (pid == 0) {
      try {
        if (p == 0) {
          writer(cacheRedis.port(), sourceRedis.port());
        } else {
          reader(p - 1, cacheRedis.port(), sourceRedis.port());
        }
      } catch (const std::exception& e) {
        std::fprintf(stderr, "worker %d: %s\n", p, e.what());
        ::_exit(3);
      }
      ::_exit(0);
    }
    children.push_back(pid);
  }
  const auto started = Clock::now();
  const auto at = [&](double share) {
    return started + std::chrono::milliseconds(static_cast<long long>(seconds * 1000 * share));
  };
  int round = 0;
  int quietOk = 0;
  bool killed = false;
  bool restarted = false;
  cacheaside::HiredisClient admin(redisOptions(cacheRedis.port()));
  while (Clock::now() < at(1.0)) {
    std::this_thread::sleep_until(std::min(Clock::now() + 1500ms, at(1.0)));
    if (!killed && Clock::now() >= at(0.3)) {
      admin.command({{}, {"CLIENT", "KILL", "TYPE", "pubsub"}});
      killed = true;
    } else if (!restarted && Clock::now() >= at(0.6)) {
      cacheRedis.restart();
      restarted = true;
    }
    quietOk += quietPoint(++round) ? 1 : 0;
  }
  shared->stop.store(1);
  int failedWorkers = 0;
  for (const pid_t c : children) {
    int status = 0;
    if (!waitFor([&] { return ::waitpid(c, &status, WNOHANG) == c; }, 30s)) {
      ::kill(c, SIGKILL);
      ::waitpid(c, &status, 0);
      ++failedWorkers;
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      ++failedWorkers;
    }
  }
  const Shared& s = *shared;
  std::printf("%d s, %d readers x %d threads: %lld reads (%lld near hits), %lld writes (%lld by "
              "redis-cli), %lld reader errors, %lld feed downs seen\n",
              seconds, kReaders, kThreads, static_cast<long long>(s.reads.load()),
              static_cast<long long>(s.nearHits.load()), static_cast<long long>(s.writes.load()),
              static_cast<long long>(s.cliWrites.load()),
              static_cast<long long>(s.readerErrors.load()),
              static_cast<long long>(s.feedDowns.load()));
  std::printf("faults: CLIENT KILL TYPE pubsub %s, redis-server restart %s\n",
              killed ? "done" : "not reached", restarted ? "done" : "not reached");
  std::printf("quiet points: %d of %d completed, %lld key checks, %lld disagreed\n", quietOk, round,
              static_cast<long long>(s.quietChecks.load()),
              static_cast<long long>(s.quietMismatches.load()));
  std::printf("reads older than a seen invalidation (near): %lld; older than 1 s (Redis): %lld\n",
              static_cast<long long>(s.nearViolations.load()),
              static_cast<long long>(s.redisViolations.load()));
  if (s.firstViolation[3].load() != 0) {
    std::printf("first: key %lld read %lld, superseded %.3f ms before the read began\n",
                static_cast<long long>(s.firstViolation[0].load()),
                static_cast<long long>(s.firstViolation[1].load()),
                static_cast<double>(s.firstViolation[3].load() - s.firstViolation[2].load()) / 1e6);
  }
  const bool pass = failedWorkers == 0 && killed && restarted && quietOk == round && round >= 3 &&
                    s.quietMismatches.load() == 0 && s.nearViolations.load() == 0 &&
                    s.redisViolations.load() == 0 && s.nearHits.load() > 0 &&
                    s.cliWrites.load() > 0 && s.feedDowns.load() >= 2 * kReaders;
  std::printf("%s\n", pass ? "PASS" : "FAIL");
  return pass ? 0 : 1;
}

} // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  int seconds = 12;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--seconds") {
      seconds = std::max(10, std::atoi(argv[++i]));
    }
  }
  void* mem =
      ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    std::perror("mmap");
    return 2;
  }
  shared = new (mem) Shared{};
  return orchestrate(seconds);
}
