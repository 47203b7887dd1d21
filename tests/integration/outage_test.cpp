// Redis stopped, refusing connections, or paused: every getOrLoad still answers, none waits
// longer than the timeouts allow, the breaker bypasses Redis meanwhile, and hits resume soon
// after Redis does. Each test runs its own redis-server and stops it by PID.
#include "support/catch.hpp"
#include "support/redis_server.hpp"
#include "support/test_redis.hpp"

#include <cacheaside/cacheaside.hpp>
#include <cacheaside/hiredis_client.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <thread>
#include <vector>

using cacheaside::CacheAside;
using cacheaside::HiredisClient;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

struct OutageRun {
  std::atomic<long long> calls{0}, failures{0}, wrong{0}, slowestUs{0};
  std::atomic<long long> firstHitAfterUs{-1};
};

// 8 threads call getOrLoad over 100 keys until `stop`; `disrupt` runs meanwhile and returns the
// moment Redis is back. Returns how long after that the first hit came.
void runUnderOutage(testsupport::RedisServer& server, const std::function<void()>& disrupt,
                    OutageRun& run, cacheaside::Stats& stats) {
  auto clientOptions = testsupport::clientOptions(server.host(), server.port());
  clientOptions.connectTimeout = 100ms;
  clientOptions.commandTimeout = 100ms;
  clientOptions.poolSize = 16;
  HiredisClient client(clientOptions);
  auto options = testsupport::cacheOptions("outage");
  options.breakerCooldown = 300ms;
  CacheAside<std::string> cache(client, options);
  for (int k = 0; k < 100; ++k) {
    cache.getOrLoad("k" + std::to_string(k), [k] { return "v" + std::to_string(k); });
  }
  std::atomic<bool> stop{false};
  std::atomic<bool> back{false};
  std::atomic<long long> backAtUs{0};
  const auto epoch = Clock::now();
  const auto us = [&] {
    return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - epoch).count();
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; !stop; ++i) {
        const int k = i % 100;
        const auto hitsBefore = cache.stats().hits;
        const auto start = us();
        try {
          const std::string v =
              cache.getOrLoad("k" + std::to_string(k), [k] { return "v" + std::to_string(k); });
          if (v != "v" + std::to_string(k)) {
            ++run.wrong;
          }
        } catch (...) {
          ++run.failures;
        }
        const auto end = us();
        ++run.calls;
        long long slowest = run.slowestUs;
        while (end - start > slowest &&
               !run.slowestUs.compare_exchange_weak(slowest, end - start)) {
        }
        if (back && start >= backAtUs && cache.stats().hits > hitsBefore) {
          long long none = -1;
          run.firstHitAfterUs.compare_exchange_strong(none, end - backAtUs);
        }
      }
    });
  }
  std::this_thread::sleep_for(200ms); // some traffic before the outage
  disrupt();
  backAtUs = us();
  back = true;
  testsupport::eventually([&] { return run.firstHitAfterUs >= 0; }, 5s);
  stop = true;
  for (auto& th : threads) {
    th.join();
  }
  stats = cache.stats();
}

void report(const char* what, const OutageRun& run, const cacheaside::Stats& s) {
  std::printf("%s: %lld calls, %lld failed, slowest %.1f ms, first hit %.0f ms after recovery, "
              "%llu bypassed by the breaker, %llu Redis errors\n",
              what, run.calls.load(), run.failures.load(), run.slowestUs / 1000.0,
              run.firstHitAfterUs / 1000.0, static_cast<unsigned long long>(s.breakerBypasses),
              static_cast<unsigned long long>(s.redisErrors));
}

} // namespace

TEST_CASE("Redis killed for 2 s and restarted: no call fails, none waits long, hits resume") {
  testsupport::RedisServer server;
  OutageRun run;
  cacheaside::Stats stats;
  runUnderOutage(
      server,
      [&] {
        server.kill();
        std::this_thread::sleep_for(2s);
        server.restart();
      },
      run, stats);
  report("killed and restarted", run, stats);
  CHECK(run.failures == 0);
  CHECK(run.wrong == 0);
  // The outage lasts 2 s: a call that waited on it would take that long. One timeout (100 ms)
  // plus the scheduler stalls of a busy 2-core machine running 4 callers stays well below.
  CHECK(run.slowestUs < 1000 * 1000);
  CHECK(run.firstHitAfterUs >= 0);
  CHECK(run.firstHitAfterUs < 1000 * 1000);
  CHECK(stats.breakerBypasses > 0);
}

TEST_CASE("Redis paused with CLIENT PAUSE 2000: no call fails, none waits long, hits resume") {
  testsupport::RedisServer server;
  HiredisClient admin(testsupport::clientOptions(server.host(), server.port()));
  OutageRun run;
  cacheaside::Stats stats;
  runUnderOutage(
      server,
      [&] {
        testsupport::cmd(admin, {"CLIENT", "PAUSE", "2000"});
        // Redis itself says when the pause is over: the admin's next command is answered then.
        while (true) {
          try {
            testsupport::cmd(admin, {"PING"});
            break;
          } catch (const cacheaside::ConnectionError&) {
          }
        }
      },
      run, stats);
  report("paused", run, stats);
  CHECK(run.failures == 0);
  CHECK(run.wrong == 0);
  CHECK(run.slowestUs < 1000 * 1000); // as above: far below the 2 s pause
  CHECK(run.firstHitAfterUs >= 0);
  CHECK(run.firstHitAfterUs < 1000 * 1000);
  CHECK(stats.breakerBypasses > 0);
}
