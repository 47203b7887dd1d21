// A live holder keeps its lease past lockTtl; a dead one loses it within lockTtl.
#include "support/catch.hpp"
#include "support/sync.hpp"
#include "support/test_redis.hpp"

#include <cacheaside/cacheaside.hpp>
#include <cacheaside/hiredis_client.hpp>

#include <csignal>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

using cacheaside::CacheAside;
using cacheaside::HiredisClient;
using namespace std::chrono_literals;

namespace {
bool holdsLease(HiredisClient& client, const std::string& rk) {
  const cacheaside::Reply r = testsupport::cmd(client, {"GET", rk});
  const auto env = r.isNil() ? std::nullopt : cacheaside::envelope::decode(r.str);
  return env && env->kind == cacheaside::EntryKind::Lease;
}
} // namespace

TEST_CASE("a loader slower than lockTtl keeps its lease, so no second load starts") {
  HiredisClient client(testsupport::clientOptions());
  auto options = testsupport::cacheOptions("renew");
  options.lockTtl = 300ms;
  options.waitBudget = 20s;
  const std::string rk = cacheaside::store::valueKey(options.keyNamespace, "slow");
  CacheAside<std::string> holder(client, options);
  CacheAside<std::string> waiter(client, options);
  testsupport::Latch loading(1), release(1);
  std::thread a([&] {
    holder.getOrLoad("slow", [&] {
      loading.countDown();
      release.wait();
      return std::string("slow value");
    });
  });
  loading.wait();
  std::atomic<int> waiterLoads{0};
  std::string got;
  std::thread b([&] {
    got = waiter.getOrLoad("slow", [&] {
      ++waiterLoads;
      return std::string("second load");
    });
  });
  // Hold the load for four lockTtls, checking all along that the lease stays.
  const auto until = std::chrono::steady_clock::now() + 4 * options.lockTtl;
  bool heldThroughout = true;
  while (std::chrono::steady_clock::now() < until) {
    heldThroughout = heldThroughout && holdsLease(client, rk);
    std::this_thread::sleep_for(10ms);
  }
  release.countDown();
  a.join();
  b.join();
  CHECK(heldThroughout);
  CHECK(waiterLoads == 0);
  CHECK(got == "slow value");
  CHECK(waiter.stats().leaseWaits == 1);
}

TEST_CASE("renewal ends with the load, also when the loader throws") {
  HiredisClient client(testsupport::clientOptions());
  auto options = testsupport::cacheOptions("renew-throw");
  options.lockTtl = 150ms;
  const std::string rk = cacheaside::store::valueKey(options.keyNamespace, "k");
  CacheAside<std::string> cache(client, options);
  CHECK_THROWS_AS(cache.getOrLoad("k",
                                  []() -> std::string {
                                    std::this_thread::sleep_for(400ms); // renewed twice meanwhile
                                    throw std::runtime_error("failed");
                                  }),
                  std::runtime_error);
  CHECK(testsupport::cmd(client, {"EXISTS", rk}).integer == 0); // released, not kept alive
  CHECK(cache.getOrLoad("k", [] { return std::string("next"); }) == "next");
  CHECK(cache.stats().leaseWaits == 0);
}

TEST_CASE("when the lease holder's process dies, a waiter takes over within lockTtl") {
  const auto lockTtl = 500ms;
  const auto pollMax = 50ms;
  testsupport::testRedis(); // a private server, if any, starts before the fork
  auto options = testsupport::cacheOptions("sigkill");
  options.lockTtl = lockTtl;
  options.pollMax = pollMax;
  options.waitBudget = 30s;
  const std::string rk = cacheaside::store::valueKey(options.keyNamespace, "k");
  int loading[2];
  REQUIRE(::pipe(loading) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    HiredisClient client(testsupport::clientOptions());
    CacheAside<std::string> cache(client, options);
    cache.getOrLoad("k", [&] {
      const char byte = 1;
      if (::write(loading[1], &byte, 1) == 1) {
        ::pause(); // loads until killed
      }
      return std::string("never");
    });
    ::_exit(1);
  }
  // A failed REQUIRE must not leave the child paused forever, holding ctest's output pipe.
  struct KillOnExit {
    pid_t pid;
    ~KillOnExit() {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  } const reaper{child};
  char byte = 0;
  REQUIRE(::read(loading[0], &byte, 1) == 1);
  HiredisClient client(testsupport::clientOptions());
  // Alive, the child renews its lease past lockTtl.
  const auto until = std::chrono::steady_clock::now() + 3 * lockTtl;
  bool heldThroughout = true;
  while (std::chrono::steady_clock::now() < until) {
    heldThroughout = heldThroughout && holdsLease(client, rk);
    std::this_thread::sleep_for(10ms);
  }
  CHECK(heldThroughout);

  CacheAside<std::string> waiter(client, options);
  std::chrono::steady_clock::time_point tookOver{};
  std::string got;
  std::thread w([&] {
    got = waiter.getOrLoad("k", [&] {
      tookOver = std::chrono::steady_clock::now();
      return std::string("taken over");
    });
  });
  // CHECK, not REQUIRE: the waiter thread must be joined, after the kill frees the lease.
  CHECK(testsupport::eventually([&] { return waiter.stats().leaseWaits == 1; }));
  const auto killed = std::chrono::steady_clock::now();
  ::kill(child, SIGKILL);
  w.join();
  ::close(loading[0]);
  ::close(loading[1]);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(tookOver - killed);
  std::printf("takeover %lld ms after SIGKILL (lockTtl %lld ms, pollMax %lld ms)\n",
              static_cast<long long>(ms.count()), static_cast<long long>(lockTtl.count()),
              static_cast<long long>(pollMax.count()));
  CHECK(got == "taken over");
  CHECK(ms <= lockTtl + pollMax + 250ms); // 250 ms of slack for a loaded 2-core machine
}
