#pragma once
// One worker process: readers calling getOrLoad and writers that bump a key's version in the
// source (a separate redis-server nobody faults) and then call invalidate. Every read is checked
// as it returns: the value must be for the key asked, and its version must be at least the
// highest version whose invalidate had returned before the read began.

#include "redis_process.hpp"
#include "shared.hpp"

#include <cacheaside/cacheaside.hpp>
#include <cacheaside/hiredis_client.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace chaos {

/// Everything the run is configured with (the orchestrator's command line).
struct Config {
  int seconds = 60;
  int processes = 4;
  int readers = 6;
  int writers = 1;
  int keys = 16;         ///< keys that writers change and invalidate (long TTL)
  int expiringKeys = 8;  ///< keys never written, with a short TTL and no jitter
  int loadMs = 20;       ///< the loader's query time, after it reads the source
  int thinkMs = 2;       ///< pause between two reads of a reader
  int writeEveryMs = 20; ///< pause between two writes of a writer
  int warmupMs = 2000;
  int gapMs = 4000; ///< quiet time between two faults
  std::vector<Fault> faults;
  bool cachePerThread = false; ///< a CacheAside per thread instead of one per process
  bool forkAfterUse = false;   ///< each worker uses its caches, then forks (a pre-fork server)
  int commandTimeoutMs = 50;
  int connectTimeoutMs = 50;
  int poolWaitMs = 50;
  int lockTtlMs = 1000;
  int waitBudgetMs = 1500;
  int pollMaxMs = 50;
  int expiringTtlMs = 1000;
  double xfetchBeta = 1.0;
  int pauseMs = 1000;
  int sleepMs = 300;
  int downMs = 1000;
  int slowMs = 100;  ///< calls slower than this are recorded one by one
  int slackMs = 100; ///< scheduling allowance added to every bound
  std::uint64_t seed = 1;
  bool strict = false;
};

inline std::string keyName(const Config& cfg, int k) {
  return k < cfg.keys ? "w" + std::to_string(k) : "e" + std::to_string(k - cfg.keys);
}

/// Thrown by the loader when the source fails: not the cache's fault, counted apart.
struct SourceError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace detail {

// What the calling thread saw during one call: cache events emitted on it and whether its own
// loader ran. No event and no load means the call joined another caller's call in flight.
struct Trace {
  bool hit = false;
  bool miss = false;
  bool loaded = false;
  std::int64_t generation = -1; ///< the key's invalidation generation when the call began
};
inline thread_local Trace trace;

// Set when this process should wind down on its own (its parent is gone).
inline std::atomic<bool> quit{false};

inline bool running(const Shared& sh, std::int64_t hardEnd) {
  return sh.stop.load() == 0 && !quit.load() && monoNanos() < hardEnd;
}

// "w12" -> 12, "e3" -> keys + 3; -1 for anything else.
inline int keyIndex(const Config& cfg, std::string_view name) {
  if (name.size() < 2 || (name[0] != 'w' && name[0] != 'e')) {
    return -1;
  }
  int n = 0;
  for (const char c : name.substr(1)) {
    if (c < '0' || c > '9') {
      return -1;
    }
    n = n * 10 + (c - '0');
  }
  return name[0] == 'w' ? n : cfg.keys + n;
}

class Source {
public:
  explicit Source(int port) : port_(port) {}

  // GET or INCR on the source; throws SourceError when it cannot answer.
  std::int64_t call(const char* verb, const std::string& key) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (!conn_) {
        conn_ = connectTo(port_, std::chrono::milliseconds(5000));
      }
      if (!conn_) {
        continue;
      }
      const ReplyPtr r = command(conn_.get(), {verb, "src:" + key});
      if (!r) {
        conn_.reset();
        continue;
      }
      if (r->type == REDIS_REPLY_INTEGER) {
        return r->integer;
      }
      if (r->type == REDIS_REPLY_NIL) {
        return 0;
      }
      if (r->type == REDIS_REPLY_STRING) {
        return std::stoll(std::string(r->str, r->len));
      }
      throw SourceError("source: unexpected reply");
    }
    throw SourceError("source: unreachable");
  }

private:
  int port_;
  Context conn_;
};

inline void recordCall(Shared& sh, const Config& cfg, std::int64_t start, std::int64_t end, int key,
                       bool invalidate, bool threw) {
  raiseMax(invalidate ? sh.maxInvalidateNs : sh.maxReadNs, end - start);
  if (end - start >= std::int64_t{cfg.slowMs} * 1000000) {
    const std::size_t i = sh.slowCount.fetch_add(1);
    if (i < kMaxSlow) {
      sh.slow[i] = SlowCall{
          start,        end, key, invalidate ? 1 : 0, static_cast<std::int32_t>(::getpid()),
          threw ? 1 : 0};
    }
  }
}

inline std::string load(Shared& sh, const Config& cfg, Source& source, int k) {
  trace.loaded = true;
  KeyState& ks = sh.keys[k];
  LoadRecord rec;
  rec.key = k;
  rec.generation = ks.invStarted.load();
  // An invalidation in progress, or one since the call began (and so perhaps since it took the
  // lease), makes a second load of this generation legitimate.
  rec.duringInvalidate = ks.invInFlight.load() > 0 || trace.generation != rec.generation ? 1 : 0;
  rec.refresh = trace.hit ? 1 : 0;
  rec.startNs = monoNanos();
  const std::size_t i = sh.loadCount.fetch_add(1);
  if (i < kMaxLoads) {
    sh.loads[i] = rec;
  }
  int armed = 1;
  if (k == sh.killKey.load() && sh.killState.compare_exchange_strong(armed, 2)) {
    // This load holds the key's lease (or loads without one, if Redis failed): wait here to be
    // SIGKILLed by the orchestrator; go on after 10 s if it never comes.
    sh.killPid.store(static_cast<int>(::getpid()));
    sh.killClaimNs.store(rec.startNs);
    sh.killState.store(3);
    std::this_thread::sleep_for(std::chrono::seconds(10));
  }
  const std::int64_t version = source.call("GET", keyName(cfg, k));
  std::this_thread::sleep_for(std::chrono::milliseconds(cfg.loadMs));
  return keyName(cfg, k) + "|" + std::to_string(version);
}

struct Caches {
  std::unique_ptr<cacheaside::CacheAside<std::string>> written;
  std::unique_ptr<cacheaside::CacheAside<std::string>> expiring;
};

inline void reader(Shared& sh, const Config& cfg, Caches& caches, int sourcePort, int thread,
                   std::int64_t hardEnd) {
  Source source(sourcePort);
  std::mt19937_64 rng(cfg.seed ^ (static_cast<std::uint64_t>(::getpid()) << 16) ^
                      static_cast<std::uint64_t>(thread));
  const int total = cfg.keys + cfg.expiringKeys;
  while (running(sh, hardEnd)) {
    const int k = static_cast<int>(rng() % static_cast<std::uint64_t>(total));
    const bool written = k < cfg.keys;
    const std::string name = keyName(cfg, k);
    auto& cache = written ? *caches.written : *caches.expiring;
    trace = Trace{};
    trace.generation = sh.keys[k].invStarted.load();
    const std::int64_t bound = written ? sh.keys[k].published.load() : 0;
    const std::int64_t start = monoNanos();
    std::string got;
    bool ok = false;
    try {
      got = cache.getOrLoad(name, [&] { return load(sh, cfg, source, k); });
      ok = true;
    } catch (const SourceError&) {
      sh.loaderErrors.fetch_add(1);
    } catch (const std::exception& e) {
      sh.failedReads.fetch_add(1);
      sh.lastFailureNs.store(monoNanos());
      std::fprintf(stderr, "chaos: getOrLoad(%s) threw: %s\n", name.c_str(), e.what());
    }
    const std::int64_t end = monoNanos();
    sh.reads.fetch_add(1);
    recordCall(sh, cfg, start, end, k, false, !ok);
    if (ok) {
      const std::string prefix = name + "|";
      std::int64_t version = -1;
      if (got.compare(0, prefix.size(), prefix) == 0) {
        try {
          version = std::stoll(got.substr(prefix.size()));
        } catch (const std::exception&) {
          version = -1;
        }
      }
      if (version < 0) {
        sh.failedReads.fetch_add(1);
        sh.wrongValues.fetch_add(1);
        std::fprintf(stderr, "chaos: getOrLoad(%s) returned a value of another key: %s\n",
                     name.c_str(), got.c_str());
      } else if (version < bound) {
        sh.staleReads.fetch_add(1);
        sh.staleByCause[trace.loaded ? 2 : (trace.hit ? 1 : 0)].fetch_add(1);
        const std::size_t i = sh.staleDetailCount.fetch_add(1);
        if (i < kMaxStaleDetails) {
          sh.staleDetails[i] =
              StaleDetail{k,   trace.loaded ? 2 : (trace.hit ? 1 : 0), version, bound, start,
                          end, static_cast<std::int32_t>(::getpid())};
        }
      }
    }
    if (cfg.thinkMs > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(cfg.thinkMs));
    }
  }
}

inline void writer(Shared& sh, const Config& cfg, Caches& caches, int sourcePort, int thread,
                   std::int64_t hardEnd) {
  Source source(sourcePort);
  std::mt19937_64 rng(cfg.seed ^ (static_cast<std::uint64_t>(::getpid()) << 16) ^
                      (static_cast<std::uint64_t>(thread) << 8) ^ 0x5eed);
  while (running(sh, hardEnd)) {
    const int k = static_cast<int>(rng() % static_cast<std::uint64_t>(cfg.keys));
    const std::string name = keyName(cfg, k);
    std::int64_t version = 0;
    try {
      version = source.call("INCR", name); // the write commits here
    } catch (const SourceError&) {
      sh.loaderErrors.fetch_add(1);
      continue;
    }
    sh.writes.fetch_add(1);
    KeyState& ks = sh.keys[k];
    ks.invInFlight.fetch_add(1);
    ks.invStarted.fetch_add(1);
    const std::int64_t start = monoNanos();
    bool ok = false;
    try {
      caches.written->invalidate(name);
      ok = true;
    } catch (const std::exception&) {
      sh.invalidateErrors.fetch_add(1);
      const std::size_t i = sh.errorCount.fetch_add(1);
      if (i < kMaxErrors) {
        sh.errors[i] = ErrorEvent{monoNanos(), k, 1};
      }
    }
    const std::int64_t end = monoNanos();
    if (ok) {
      raiseMax(ks.published, version);
    }
    ks.invInFlight.fetch_sub(1);
    sh.invalidates.fetch_add(1);
    recordCall(sh, cfg, start, end, k, true, !ok);
    std::this_thread::sleep_for(std::chrono::milliseconds(cfg.writeEveryMs));
  }
}

// Sleeps 5 ms at a time and records every time it woke 50 ms late or more (see Stall).
inline void canary(Shared& sh, std::int64_t hardEnd) {
  constexpr std::int64_t kStep = 5 * 1000 * 1000;
  while (running(sh, hardEnd)) {
    const std::int64_t before = monoNanos();
    std::this_thread::sleep_for(std::chrono::nanoseconds(kStep));
    const std::int64_t after = monoNanos();
    if (after - before - kStep >= 10 * kStep) {
      const std::size_t i = sh.stallCount.fetch_add(1);
      if (i < kMaxStalls) {
        sh.stalls[i] = Stall{before + kStep, after, static_cast<std::int32_t>(::getpid())};
      }
    }
  }
}

inline void publishStats(Slot& slot, const std::vector<Caches>& caches) {
  cacheaside::Stats sum;
  for (const auto& c : caches) {
    for (const auto* cache : {c.written.get(), c.expiring.get()}) {
      const cacheaside::Stats s = cache->stats();
      sum.hits += s.hits;
      sum.misses += s.misses;
      sum.loads += s.loads;
      sum.leaseWaits += s.leaseWaits;
      sum.waitTimeouts += s.waitTimeouts;
      sum.coalesced += s.coalesced;
      sum.redisErrors += s.redisErrors;
      sum.fencedWrites += s.fencedWrites;
      sum.breakerBypasses += s.breakerBypasses;
      sum.refreshes += s.refreshes;
    }
  }
  slot.hits.store(sum.hits);
  slot.misses.store(sum.misses);
  slot.loads.store(sum.loads);
  slot.leaseWaits.store(sum.leaseWaits);
  slot.waitTimeouts.store(sum.waitTimeouts);
  slot.coalesced.store(sum.coalesced);
  slot.redisErrors.store(sum.redisErrors);
  slot.fencedWrites.store(sum.fencedWrites);
  slot.breakerBypasses.store(sum.breakerBypasses);
  slot.refreshes.store(sum.refreshes);
}

} // namespace detail

/// The body of a worker process (forked, not exec'd, from the single-threaded orchestrator).
inline int runWorker(Shared& sh, const Config& cfg, std::size_t slot, int cachePort, int sourcePort,
                     std::int64_t hardEnd) {
  std::signal(SIGPIPE, SIG_IGN);
  pid_t parent = ::getppid();
  cacheaside::HiredisOptions ho;
  ho.port = cachePort;
  ho.commandTimeout = std::chrono::milliseconds(cfg.commandTimeoutMs);
  ho.connectTimeout = std::chrono::milliseconds(cfg.connectTimeoutMs);
  ho.poolWaitTimeout = std::chrono::milliseconds(cfg.poolWaitMs);
  ho.poolSize = static_cast<std::size_t>(cfg.readers + cfg.writers + 2);
  cacheaside::HiredisClient client(ho);

  cacheaside::CacheOptions written;
  written.keyNamespace = "chaos";
  written.ttl = std::chrono::minutes(30); // changed by writers only, never expires in a run
  written.lockTtl = std::chrono::milliseconds(cfg.lockTtlMs);
  written.waitBudget = std::chrono::milliseconds(cfg.waitBudgetMs);
  written.pollMax = std::chrono::milliseconds(cfg.pollMaxMs);
  written.xfetchBeta = cfg.xfetchBeta;
  written.onEvent = [&sh, &cfg](const cacheaside::Event& e) {
    if (e.type == cacheaside::EventType::Hit) {
      detail::trace.hit = true;
    } else if (e.type == cacheaside::EventType::Miss) {
      detail::trace.miss = true;
    } else if (e.type == cacheaside::EventType::RedisError) {
      const std::size_t i = sh.errorCount.fetch_add(1);
      if (i < kMaxErrors) {
        sh.errors[i] = ErrorEvent{monoNanos(), detail::keyIndex(cfg, e.key), 0};
      }
    }
  };
  cacheaside::CacheOptions expiring = written;
  expiring.ttl = std::chrono::milliseconds(cfg.expiringTtlMs);
  expiring.ttlJitter = 0; // so that one expiry is one TTL: loads per expiry can be counted

  const int threads = cfg.readers + cfg.writers;
  std::vector<detail::Caches> caches(cfg.cachePerThread ? static_cast<std::size_t>(threads) : 1);
  for (auto& c : caches) {
    c.written = std::make_unique<cacheaside::CacheAside<std::string>>(client, written);
    c.expiring = std::make_unique<cacheaside::CacheAside<std::string>>(client, expiring);
  }
  const auto cachesOf = [&](int t) -> detail::Caches& {
    return caches[cfg.cachePerThread ? static_cast<std::size_t>(t) : 0];
  };
  pid_t child = -1;
  if (cfg.forkAfterUse) {
    // A pre-fork server: the caches (their pooled connections, their renewer) are used, then
    // the process forks and both go on with the same objects.
    detail::Source source(sourcePort);
    for (int k = 0; k < cfg.keys + cfg.expiringKeys; ++k) {
      auto& cache = k < cfg.keys ? *caches[0].written : *caches[0].expiring;
      try {
        cache.getOrLoad(keyName(cfg, k), [&] { return detail::load(sh, cfg, source, k); });
      } catch (const std::exception&) {
        // Counted by the readers' checks later; the warm-up only opens connections.
      }
    }
    std::fflush(stderr);
    const pid_t self = ::getpid();
    child = ::fork();
    if (child == 0) {
      // Dies with its parent: a worker SIGKILLed by the schedule must not leave it behind.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      slot = sh.slotCount.fetch_add(1) % kMaxSlots;
      if (::getppid() != self) {
        ::_exit(0);
      }
      parent = self;
    }
  }
  std::vector<std::thread> pool;
  for (int t = 0; t < cfg.readers; ++t) {
    pool.emplace_back([&, t] { detail::reader(sh, cfg, cachesOf(t), sourcePort, t, hardEnd); });
  }
  for (int t = cfg.readers; t < threads; ++t) {
    pool.emplace_back([&, t] { detail::writer(sh, cfg, cachesOf(t), sourcePort, t, hardEnd); });
  }
  pool.emplace_back([&] { detail::canary(sh, hardEnd); });
  while (detail::running(sh, hardEnd)) {
    detail::publishStats(sh.slots[slot], caches);
    if (::getppid() != parent) {
      detail::quit.store(true); // the parent is gone: wind down
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  for (auto& t : pool) {
    t.join();
  }
  detail::publishStats(sh.slots[slot], caches);
  if (child > 0) {
    const std::int64_t deadline = monoNanos() + std::int64_t{20} * 1000 * 1000 * 1000;
    int status = 0;
    while (::waitpid(child, &status, WNOHANG) == 0) {
      if (monoNanos() > deadline) {
        ::kill(child, SIGKILL);
        ::waitpid(child, &status, 0);
        return 1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
  }
  return 0;
}

} // namespace chaos
