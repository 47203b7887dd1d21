#pragma once
// The stampede measurement: P processes x T threads, released together, read one cold key whose
// loader takes 100 ms. The loader counts itself with INCR in Redis, so the server tells how
// many loads there were across all processes.

#include "bench_support.hpp"

#include <cacheaside/cacheaside.hpp>
#include <cacheaside/client/hiredis_cluster.hpp>
#include <cacheaside/hiredis_client.hpp>
#include <cacheaside/near/hiredis_feed.hpp>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <poll.h>
#include <string>
#include <sys/types.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace bench {

/// Who reads the cold key.
enum class StampedeMode {
  Naive,           ///< hand-written: GET; on nil load and SET PX (no lock)
  CacheShared,     ///< one CacheAside per process, shared by its threads
  CachePerThread,  ///< one CacheAside per thread: no single-flight, the Redis lease alone
  CacheSharedNear, ///< CacheShared with the near cache on: waiters woken by the fill's push
};

/// What one stampede showed.
struct StampedeResult {
  long long loads = 0;        ///< loader calls, counted by the server (INCR)
  long long clientLoads = 0;  ///< loader calls, counted by the processes
  double wallMs = 0;          ///< from the release to the last thread's answer
  long long failures = 0;     ///< threads that threw or got a wrong value
  long long redisErrors = 0;  ///< cacheaside stats: Redis calls that failed or timed out
  long long waitTimeouts = 0; ///< cacheaside stats: waits for another caller's load that ran out
  std::vector<double> afterFillMs; ///< per thread: from the loader's return to its answer
};

namespace detail {

inline void writeAll(int fd, const void* data, std::size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return;
    }
    p += n;
    size -= static_cast<std::size_t>(n);
  }
}

// Blocks until the parent closes the write end of the release pipe (read returns 0).
inline void awaitRelease(int fd) {
  char c = 0;
  for (;;) {
    const ssize_t n = ::read(fd, &c, 1);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    return;
  }
}

struct ChildReport {
  long long clientLoads = 0;
  long long failures = 0;
  long long redisErrors = 0;
  long long waitTimeouts = 0;
  std::int64_t lastEndNs = 0;
  std::int64_t loadEndNs = 0; // when this process's loader returned (0: it did not load)
  int ends = 0;
  std::int64_t endNs[64] = {}; // each thread's answer, for the first 64 threads
};

// The body of one child process; returns its report.
inline ChildReport runChild(StampedeMode mode, int threads, const cacheaside::HiredisOptions& redis,
                            const Products& expected, const std::string& payload,
                            const std::string& key, const std::string& counterKey, int releaseFd,
                            int readyFd, const std::string& clusterSeed) {
  using namespace std::chrono;
  constexpr auto kLoad = milliseconds(100);
  const int port = redis.port;
  cacheaside::HiredisOptions ho = redis;
  ho.poolSize = mode == StampedeMode::CachePerThread ? static_cast<std::size_t>(threads) : 8;
  // 50 threads share 8 connections on a starved CPU: a wait past the default 50 ms would be a
  // pool shortage answered by an uncached load, not what this measures (the lease protocol).
  ho.poolWaitTimeout = std::chrono::seconds(2);
  // The cache's client: the standalone server, or a cluster (the loads counter stays standalone).
  std::unique_ptr<cacheaside::RedisClient> owned;
  if (clusterSeed.empty()) {
    owned = std::make_unique<cacheaside::HiredisClient>(ho);
  } else {
    cacheaside::HiredisClusterOptions co;
    co.seeds = {clusterSeed};
    co.node = ho;
    owned = std::make_unique<cacheaside::HiredisClusterClient>(co);
  }
  cacheaside::RedisClient& client = *owned;
  cacheaside::CacheOptions co;
  co.keyNamespace = "bench-stampede";
  co.ttl = seconds(60);
  std::shared_ptr<cacheaside::near::HiredisInvalidationFeed> feed;
  if (mode == StampedeMode::CacheSharedNear) {
    cacheaside::near::HiredisFeedOptions fo;
    fo.redis = redis;
    fo.namespaces = {co.keyNamespace};
    fo.lagLimit = milliseconds(1000);
    feed = std::make_shared<cacheaside::near::HiredisInvalidationFeed>(fo);
    if (!feed->waitUntilUp(seconds(10))) {
      throw std::runtime_error("bench: the invalidation feed did not come up");
    }
    co.nearCache.feed = feed;
  }
  std::vector<std::unique_ptr<cacheaside::CacheAside<Products>>> caches;
  const std::size_t instances =
      mode == StampedeMode::CachePerThread ? static_cast<std::size_t>(threads) : 1;
  for (std::size_t i = 0; mode != StampedeMode::Naive && i < instances; ++i) {
    caches.push_back(std::make_unique<cacheaside::CacheAside<Products>>(client, co));
  }
  if (mode != StampedeMode::Naive) {
    bench::cmd(client, {"PING"}); // one pooled connection open before the release
  }
  std::atomic<long long> loads{0};
  std::atomic<long long> failures{0};
  std::atomic<std::int64_t> lastEnd{0};
  std::atomic<std::int64_t> loadEnd{0};
  std::vector<std::int64_t> ends(static_cast<std::size_t>(threads), 0);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      try {
        RawConn raw(port, milliseconds(2000));
        const auto load = [&] {
          raw.command({"INCR", counterKey});
          loads.fetch_add(1);
          std::this_thread::sleep_for(kLoad);
          loadEnd.store(monoNanos());
          return expected;
        };
        const char one = 1;
        writeAll(readyFd, &one, 1);
        awaitRelease(releaseFd);
        Products got;
        if (mode == StampedeMode::Naive) {
          const ReplyPtr r = raw.command({"GET", key});
          if (r->type == REDIS_REPLY_STRING) {
            got = nlohmann::json::parse(r->str, r->str + r->len).get<Products>();
          } else {
            got = load();
            raw.command({"SET", key, payload, "PX", "60000"});
          }
        } else {
          auto& cache = *caches[caches.size() == 1 ? 0 : static_cast<std::size_t>(t)];
          got = cache.getOrLoad(key, load);
        }
        if (got.size() != expected.size()) {
          failures.fetch_add(1);
        }
      } catch (...) {
        failures.fetch_add(1);
      }
      const std::int64_t now = monoNanos();
      ends[static_cast<std::size_t>(t)] = now;
      std::int64_t prev = lastEnd.load();
      while (now > prev && !lastEnd.compare_exchange_weak(prev, now)) {
      }
    });
  }
  for (auto& w : workers) {
    w.join();
  }
  ChildReport report;
  report.clientLoads = loads.load();
  report.failures = failures.load();
  report.lastEndNs = lastEnd.load();
  report.loadEndNs = loadEnd.load();
  for (std::size_t i = 0; i < ends.size() && i < std::size(report.endNs); ++i) {
    report.endNs[report.ends++] = ends[i];
  }
  for (const auto& c : caches) {
    const auto s = c->stats();
    report.redisErrors += static_cast<long long>(s.redisErrors);
    report.waitTimeouts += static_cast<long long>(s.waitTimeouts);
  }
  return report;
}

} // namespace detail

/// Forks `processes` children of `threads` threads each; every thread connects, signals ready
/// and blocks on one pipe; the parent closes the pipe to release them all at once. No thread of
/// the caller may be running (fork copies only the calling thread).
inline StampedeResult stampede(StampedeMode mode, int processes, int threads,
                               const cacheaside::HiredisOptions& redis, const Products& expected,
                               const std::string& payload, const std::string& key,
                               const std::string& counterKey, const std::string& clusterSeed = {}) {
  int release[2];
  int ready[2];
  int results[2];
  if (::pipe(release) != 0 || ::pipe(ready) != 0 || ::pipe(results) != 0) {
    throw std::runtime_error("bench: pipe failed");
  }
  std::fflush(stdout);
  std::fflush(stderr);
  std::vector<pid_t> children;
  for (int p = 0; p < processes; ++p) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      for (pid_t c : children) {
        ::kill(c, SIGKILL);
        ::waitpid(c, nullptr, 0);
      }
      throw std::runtime_error("bench: fork failed");
    }
    if (pid == 0) {
      ::close(release[1]);
      ::close(ready[0]);
      ::close(results[0]);
      detail::ChildReport report;
      try {
        report = detail::runChild(mode, threads, redis, expected, payload, key, counterKey,
                                  release[0], ready[1], clusterSeed);
      } catch (...) {
        report.failures = threads;
      }
      detail::writeAll(results[1], &report, sizeof report); // < PIPE_BUF: one atomic write
      ::_exit(0);
    }
    children.push_back(pid);
  }
  ::close(release[0]);
  ::close(ready[1]);
  ::close(results[1]);

  // Wait (at most 30 s) until every thread is connected and blocked on the release pipe.
  const int expectedReady = processes * threads;
  int readyCount = 0;
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (readyCount < expectedReady && Clock::now() < deadline) {
    pollfd pfd{ready[0], POLLIN, 0};
    if (::poll(&pfd, 1, 100) > 0) {
      char buf[256];
      const ssize_t n = ::read(ready[0], buf, sizeof buf);
      if (n <= 0) {
        break; // every child is gone
      }
      readyCount += static_cast<int>(n);
    }
  }
  const std::int64_t released = monoNanos();
  ::close(release[1]);

  StampedeResult result;
  long long reports = 0;
  std::int64_t loadEnd = 0;
  std::vector<std::int64_t> ends;
  for (;;) {
    detail::ChildReport report;
    std::size_t got = 0;
    while (got < sizeof report) {
      const ssize_t n =
          ::read(results[0], reinterpret_cast<char*>(&report) + got, sizeof report - got);
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n <= 0) {
        break;
      }
      got += static_cast<std::size_t>(n);
    }
    if (got < sizeof report) {
      break;
    }
    ++reports;
    loadEnd = std::max(loadEnd, report.loadEndNs);
    ends.insert(ends.end(), report.endNs, report.endNs + report.ends);
    result.clientLoads += report.clientLoads;
    result.failures += report.failures;
    result.redisErrors += report.redisErrors;
    result.waitTimeouts += report.waitTimeouts;
    result.wallMs = std::max(result.wallMs, static_cast<double>(report.lastEndNs - released) / 1e6);
  }
  ::close(ready[0]);
  ::close(results[0]);
  for (pid_t c : children) {
    int status = 0;
    ::waitpid(c, &status, 0);
  }
  if (readyCount < expectedReady || reports < processes) {
    throw std::runtime_error("bench: stampede: " + std::to_string(readyCount) + "/" +
                             std::to_string(expectedReady) + " threads ready, " +
                             std::to_string(reports) + " reports");
  }
  for (const std::int64_t end : ends) {
    result.afterFillMs.push_back(loadEnd > 0 ? static_cast<double>(end - loadEnd) / 1e6 : 0.0);
  }
  RawConn conn(redis.port, std::chrono::milliseconds(2000));
  const ReplyPtr r = conn.command({"GET", counterKey});
  result.loads = r->type == REDIS_REPLY_STRING ? std::stoll(std::string(r->str, r->len)) : 0;
  return result;
}

} // namespace bench
