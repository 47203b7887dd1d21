#include "support/catch.hpp"

#include <cacheaside/detail/lease_renewer.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>

using cacheaside::detail::LeaseRenewer;
using namespace std::chrono_literals;

namespace {
struct Calls {
  std::mutex mutex;
  std::map<std::string, int> byKey;
  int count(const std::string& key) {
    std::lock_guard<std::mutex> lock(mutex);
    return byKey[key];
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
  LeaseRenewer renewer(
      [&](const std::string& key, const std::string& token) {
        std::lock_guard<std::mutex> lock(calls.mutex);
        calls.byKey[key + "/" + token]++;
      },
      20ms);
  {
    const LeaseRenewer::Registration a(renewer, renewer.add("a", "t1"));
    {
      const LeaseRenewer::Registration b(renewer, renewer.add("b", "t2"));
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
}

TEST_CASE("a renewer that never had a lease starts no thread and stops at once") {
  std::atomic<int> calls{0};
  {
    LeaseRenewer renewer([&](const std::string&, const std::string&) { ++calls; }, 1ms);
  }
  CHECK(calls == 0);
}
