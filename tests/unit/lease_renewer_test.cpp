#include "support/catch.hpp"

#include <cacheaside/detail/lease_renewer.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using cacheaside::detail::LeaseJob;
using cacheaside::detail::LeaseRenewer;
using namespace std::chrono_literals;

namespace {
// What the renewer sent: per job (key/token, "release:" prefixed for releases) and per batch.
struct Calls {
  std::mutex mutex;
  std::map<std::string, int> byJob;
  std::vector<std::size_t> batchSizes;
  bool releasesSucceed = false;

  std::vector<bool> record(const std::vector<LeaseJob>& jobs) {
    std::lock_guard<std::mutex> lock(mutex);
    batchSizes.push_back(jobs.size());
    std::vector<bool> finished;
    for (const auto& job : jobs) {
      byJob[(job.release ? "release:" : "") + job.key + "/" + job.token]++;
      finished.push_back(job.release && releasesSucceed);
    }
    return finished;
  }
  int count(const std::string& job) {
    std::lock_guard<std::mutex> lock(mutex);
    return byJob[job];
  }
};

template <typename Pred> bool within(std::chrono::milliseconds limit, Pred pred) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return false;
    }
    std::this_thread::sleep_for(1ms);
  }
  return true;
}
} // namespace

TEST_CASE("registered leases are renewed every period until their registration ends") {
  Calls calls;
  LeaseRenewer renewer([&](const std::vector<LeaseJob>& jobs) { return calls.record(jobs); }, 20ms,
                       1s);
  {
    const LeaseRenewer::Registration a(renewer, renewer.add("a", "", "t1"));
    {
      const LeaseRenewer::Registration b(renewer, renewer.add("b", "v", "t2"));
      CHECK(within(10s, [&] { return calls.count("b/t2") >= 3; }));
    }
    const int bAfter = calls.count("b/t2");
    CHECK(within(10s, [&] { return calls.count("a/t1") >= bAfter + 3; }));
    // At most one renewal of b was already under way when its registration ended.
    CHECK(calls.count("b/t2") <= bAfter + 1);
  }
  const int aAfter = calls.count("a/t1");
  std::this_thread::sleep_for(100ms); // five periods in which nothing may happen
  CHECK(calls.count("a/t1") <= aAfter + 1);
  CHECK(renewer.pending() == 0);
}

TEST_CASE("leases due together are renewed in one batch") {
  Calls calls;
  LeaseRenewer renewer([&](const std::vector<LeaseJob>& jobs) { return calls.record(jobs); }, 200ms,
                       10s);
  std::vector<std::unique_ptr<LeaseRenewer::Registration>> held;
  for (int i = 0; i < 50; ++i) {
    held.push_back(std::make_unique<LeaseRenewer::Registration>(
        renewer, renewer.add("k" + std::to_string(i), "", "t")));
  }
  REQUIRE(within(10s, [&] { return calls.count("k49/t") >= 1; }));
  std::lock_guard<std::mutex> lock(calls.mutex);
  // 50 leases registered within a few ms of each other: a handful of batches, not 50.
  CHECK(calls.batchSizes.size() <= 5);
  std::size_t total = 0;
  for (const std::size_t n : calls.batchSizes) {
    total += n;
  }
  CHECK(total >= 50);
}

TEST_CASE("a release left behind is retried until it succeeds, then dropped") {
  Calls calls;
  LeaseRenewer renewer([&](const std::vector<LeaseJob>& jobs) { return calls.record(jobs); }, 1s,
                       60s);
  renewer.releaseLater("k", "t");
  REQUIRE(within(10s, [&] { return calls.count("release:k/t") >= 3; })); // failing: retried
  {
    std::lock_guard<std::mutex> lock(calls.mutex);
    calls.releasesSucceed = true;
  }
  REQUIRE(within(10s, [&] { return renewer.pending() == 0; }));
  const int after = calls.count("release:k/t");
  std::this_thread::sleep_for(50ms);
  CHECK(calls.count("release:k/t") == after);
}

TEST_CASE("a release that keeps failing is given up once the lease has expired by itself") {
  Calls calls;
  LeaseRenewer renewer([&](const std::vector<LeaseJob>& jobs) { return calls.record(jobs); }, 20ms,
                       100ms);
  renewer.releaseLater("k", "t");
  REQUIRE(within(10s, [&] { return renewer.pending() == 0; }));
  CHECK(calls.count("release:k/t") >= 1);
}

TEST_CASE("a renewer that never had a lease starts no thread and stops at once") {
  std::atomic<int> calls{0};
  {
    LeaseRenewer renewer(
        [&](const std::vector<LeaseJob>& jobs) {
          ++calls;
          return std::vector<bool>(jobs.size(), false);
        },
        1ms, 1ms);
  }
  CHECK(calls == 0);
}

TEST_CASE("registrations of several leases renew them together and end them together") {
  Calls calls;
  LeaseRenewer renewer([&](const std::vector<LeaseJob>& jobs) { return calls.record(jobs); }, 20ms,
                       1s);
  const LeaseRenewer::Registration other(renewer, renewer.add("other", "", "t0"));
  {
    std::vector<LeaseJob> jobs;
    for (int i = 0; i < 10; ++i) {
      jobs.push_back(LeaseJob{"k" + std::to_string(i), "", "t", false});
    }
    const LeaseRenewer::Registrations held(renewer, std::move(jobs));
    CHECK(renewer.pending() == 11);
    REQUIRE(within(10s, [&] { return calls.count("k0/t") >= 2 && calls.count("k9/t") >= 2; }));
  }
  CHECK(renewer.pending() == 1); // the others' registration is untouched
  const int after = calls.count("k0/t");
  REQUIRE(within(10s, [&] { return calls.count("other/t0") >= 10; }));
  CHECK(calls.count("k0/t") <= after + 1); // one renewal may have been under way
  const LeaseRenewer::Registrations none(renewer, {});
  CHECK(renewer.pending() == 1);
}
