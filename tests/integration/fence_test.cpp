// The lease is also the fence: interleavings of loads, invalidations and waiters, made
// deterministic with latches (two cache instances stand for two processes).
#include "support/catch.hpp"
#include "support/sync.hpp"
#include "support/test_clients.hpp"
#include "support/test_redis.hpp"

#include <cacheaside/cacheaside.hpp>
#include <cacheaside/hiredis_client.hpp>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

using cacheaside::CacheAside;
using cacheaside::EntryKind;
using cacheaside::HiredisClient;
using namespace std::chrono_literals;

namespace {
// What the key holds in Redis right now.
std::optional<cacheaside::EntryKind> storedKind(cacheaside::RedisClient& client,
                                                const std::string& rk) {
  const cacheaside::Reply r = testsupport::cmd(client, {"GET", rk});
  if (r.isNil()) {
    return std::nullopt;
  }
  const auto env = cacheaside::envelope::decode(r.str);
  REQUIRE(env);
  return env->kind;
}
std::string storedBytes(cacheaside::RedisClient& client, const std::string& rk) {
  return testsupport::cmd(client, {"GET", rk}).str;
}
} // namespace

TEST_CASE("an invalidation during a load prevents its write-back") {
  CACHEASIDE_EACH_CLIENT(client);
  const auto options = testsupport::cacheOptions("fence");
  const std::string rk = cacheaside::store::valueKey(options.keyNamespace, "user:1");
  CacheAside<std::string> cache(client, options);
  testsupport::Latch loading(1), invalidated(1);
  std::string returned;
  std::thread loader([&] {
    returned = cache.getOrLoad("user:1", [&] {
      loading.countDown();
      invalidated.wait();
      return std::string("read before the write");
    });
  });
  loading.wait();
  CHECK(storedKind(client, rk) == EntryKind::Lease);
  cache.invalidate("user:1"); // the write committed; its invalidation lands mid-load
  invalidated.countDown();
  loader.join();
  CHECK(returned == "read before the write"); // the caller still gets its value
  CHECK_FALSE(storedKind(client, rk));        // but it was not written back
  CHECK(cache.stats().fencedWrites == 1);
  int loads = 0;
  CHECK(cache.getOrLoad("user:1", [&] {
    ++loads;
    return std::string("read after the write");
  }) == "read after the write");
  CHECK(loads == 1);
}

TEST_CASE("a holder whose lease expired can neither write nor delete the next holder's lease") {
  CACHEASIDE_EACH_CLIENT(client);
  auto options = testsupport::cacheOptions("expired");
  const std::string rk = cacheaside::store::valueKey(options.keyNamespace, "k");
  CacheAside<std::string> first(client, options);
  CacheAside<std::string> second(client, options);
  testsupport::Latch firstLoading(1), releaseFirst(1), secondLoading(1), releaseSecond(1);
  std::string firstGot, secondGot;
  std::thread a([&] {
    firstGot = first.getOrLoad("k", [&] {
      firstLoading.countDown();
      releaseFirst.wait();
      return std::string("slow and late");
    });
  });
  firstLoading.wait();
  // The lease expires as if its holder had stalled past lockTtl without renewing it (a paused
  // process, a partition); a live holder renews it (see renewal_test.cpp).
  testsupport::cmd(client, {"DEL", rk});
  std::thread b([&] {
    secondGot = second.getOrLoad("k", [&] {
      secondLoading.countDown();
      releaseSecond.wait();
      return std::string("fresh");
    });
  });
  secondLoading.wait();
  const std::string secondLease = storedBytes(client, rk);
  releaseFirst.countDown();
  a.join();
  CHECK(firstGot == "slow and late");
  CHECK(first.stats().fencedWrites == 1);
  CHECK(storedBytes(client, rk) == secondLease); // untouched: not overwritten, not deleted
  releaseSecond.countDown();
  b.join();
  CHECK(secondGot == "fresh");
  CHECK(second.stats().fencedWrites == 0);
  CHECK(first.get("k") == std::optional<std::string>("fresh"));
}

TEST_CASE("a caller that loses the lease waits for the winner's value instead of loading") {
  CACHEASIDE_EACH_CLIENT(client);
  const auto options = testsupport::cacheOptions("wait");
  CacheAside<std::string> winner(client, options);
  CacheAside<std::string> waiter(client, options);
  testsupport::Latch loading(1), release(1);
  std::thread a([&] {
    winner.getOrLoad("k", [&] {
      loading.countDown();
      release.wait();
      return std::string("winner's value");
    });
  });
  loading.wait();
  std::atomic<int> waiterLoads{0};
  std::string got;
  std::thread b([&] {
    got = waiter.getOrLoad("k", [&] {
      ++waiterLoads;
      return std::string("waiter's value");
    });
  });
  REQUIRE(testsupport::eventually([&] { return waiter.stats().leaseWaits == 1; }));
  release.countDown();
  a.join();
  b.join();
  CHECK(got == "winner's value");
  CHECK(waiterLoads == 0);
  CHECK(waiter.stats().misses == 1);
  CHECK(waiter.stats().waitTimeouts == 0);
}

TEST_CASE("when the lease disappears a waiter competes again and loads itself") {
  CACHEASIDE_EACH_CLIENT(client);
  const auto options = testsupport::cacheOptions("vanish");
  const std::string rk = cacheaside::store::valueKey(options.keyNamespace, "k");
  CacheAside<std::string> waiter(client, options);
  // A lease from a holder that then dies: someone else's record of kind Lease.
  std::string lease;
  cacheaside::envelope::appendHeader(lease, EntryKind::Lease, 0);
  lease += "0123456789abcdef";
  testsupport::cmd(client, {"SET", rk, lease, "PX", "60000"});
  std::string got;
  std::thread b([&] { got = waiter.getOrLoad("k", [] { return std::string("mine"); }); });
  REQUIRE(testsupport::eventually([&] { return waiter.stats().leaseWaits == 1; }));
  testsupport::cmd(client, {"DEL", rk});
  b.join();
  CHECK(got == "mine");
  CHECK(waiter.get("k") == std::optional<std::string>("mine")); // and it was cached
}

TEST_CASE("when the wait budget runs out the waiter loads without writing, by default") {
  CACHEASIDE_EACH_CLIENT(client);
  auto options = testsupport::cacheOptions("budget");
  options.waitBudget = 100ms;
  const std::string rk = cacheaside::store::valueKey(options.keyNamespace, "k");
  CacheAside<std::string> holder(client, options);
  CacheAside<std::string> waiter(client, options);
  testsupport::Latch loading(1), release(1);
  std::thread a([&] {
    holder.getOrLoad("k", [&] {
      loading.countDown();
      release.wait();
      return std::string("holder's");
    });
  });
  loading.wait();
  CHECK(waiter.getOrLoad("k", [] { return std::string("waiter's"); }) == "waiter's");
  CHECK(waiter.stats().waitTimeouts == 1);
  CHECK(storedKind(client, rk) == EntryKind::Lease); // the waiter did not write
  release.countDown();
  a.join();
  CHECK(waiter.get("k") == std::optional<std::string>("holder's"));
}

TEST_CASE("when the wait budget runs out a waiter throws LockTimeoutError if asked to") {
  CACHEASIDE_EACH_CLIENT(client);
  auto options = testsupport::cacheOptions("budget-throw");
  options.waitBudget = 100ms;
  const std::string rk = cacheaside::store::valueKey(options.keyNamespace, "k");
  CacheAside<std::string> waiter(client, options);
  std::string lease;
  cacheaside::envelope::appendHeader(lease, EntryKind::Lease, 0);
  lease += "fedcba9876543210";
  testsupport::cmd(client, {"SET", rk, lease, "PX", "60000"});
  cacheaside::CallOptions call;
  call.onWaitTimeout = cacheaside::WaitTimeoutPolicy::Throw;
  int loads = 0;
  try {
    waiter.getOrLoad(
        "k",
        [&] {
          ++loads;
          return std::string("x");
        },
        call);
    FAIL("no LockTimeoutError");
  } catch (const cacheaside::LockTimeoutError& e) {
    CHECK(std::string(e.what()).find("'k'") != std::string::npos);
  }
  CHECK(loads == 0);
  CHECK(storedBytes(client, rk) == lease);
}
