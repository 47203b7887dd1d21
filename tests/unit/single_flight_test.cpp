#include "support/catch.hpp"
#include "support/sync.hpp"

#include <cacheaside/detail/single_flight.hpp>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using cacheaside::detail::SingleFlight;

namespace {
struct LoaderFailed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Yields until pred() holds: a wait for something the test can observe, not a guess at timing.
template <typename Pred> void waitUntil(Pred pred) {
  while (!pred()) {
    std::this_thread::yield();
  }
}
} // namespace

TEST_CASE("concurrent calls for one key run the work once and share its result") {
  SingleFlight<std::string> flights;
  constexpr int kThreads = 8;
  std::atomic<int> runs{0};
  std::atomic<int> joins{0};
  std::vector<std::string> results(kThreads);
  testsupport::Latch release(1);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      results[static_cast<std::size_t>(i)] = flights.run(
          "key",
          [&] {
            ++runs;
            release.wait();
            return std::string("value");
          },
          [&] { ++joins; });
    });
  }
  waitUntil([&] { return flights.followers("key") == kThreads - 1; });
  release.countDown();
  for (auto& t : threads) {
    t.join();
  }
  CHECK(runs == 1);
  CHECK(joins == kThreads - 1);
  for (const auto& r : results) {
    CHECK(r == "value");
  }
  CHECK(flights.inFlight() == 0);
}

TEST_CASE("an exception reaches every coalesced caller unchanged and is not remembered") {
  SingleFlight<int> flights;
  constexpr int kThreads = 6;
  std::atomic<int> failures{0};
  testsupport::Latch release(1);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      try {
        flights.run(
            "key",
            [&]() -> int {
              release.wait();
              throw LoaderFailed("database down");
            },
            [] {});
      } catch (const LoaderFailed& e) {
        if (std::string(e.what()) == "database down") {
          ++failures;
        }
      }
    });
  }
  waitUntil([&] { return flights.followers("key") == kThreads - 1; });
  release.countDown();
  for (auto& t : threads) {
    t.join();
  }
  CHECK(failures == kThreads);
  int runs = 0;
  CHECK(flights.run(
            "key",
            [&] {
              ++runs;
              return 42;
            },
            [] {}) == 42);
  CHECK(runs == 1);
}

TEST_CASE("different keys do not wait for each other") {
  SingleFlight<int> flights;
  testsupport::Latch firstRunning(1);
  testsupport::Latch release(1);
  std::thread slow([&] {
    flights.run(
        "slow",
        [&] {
          firstRunning.countDown();
          release.wait();
          return 1;
        },
        [] {});
  });
  firstRunning.wait();
  bool joined = false;
  CHECK(flights.run(
            "other", [] { return 2; }, [&] { joined = true; }) == 2);
  CHECK_FALSE(joined);
  CHECK(flights.inFlight() == 1);
  release.countDown();
  slow.join();
  CHECK(flights.inFlight() == 0);
}

TEST_CASE("bookkeeping does not grow over a million distinct keys") {
  SingleFlight<int> flights;
  const std::size_t bucketsBefore = flights.bucketCount();
  constexpr int kThreads = 4;
  constexpr int kKeysPerThread = 250000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kKeysPerThread; ++i) {
        flights.run(
            "k" + std::to_string(t) + ":" + std::to_string(i), [i] { return i; }, [] {});
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  CHECK(flights.inFlight() == 0);
  // At most kThreads keys are ever in flight at once, so no shard ever needs to grow.
  CHECK(flights.bucketCount() <= bucketsBefore + 16 * 16);
}

TEST_CASE("a closed call sends later callers off on their own and an opened one takes them in") {
  using Gate = SingleFlight<int>::Gate;
  SingleFlight<int> flights;
  testsupport::Latch closedPhase(1), toOpen(1), opened(1), release(1);
  std::thread leader([&] {
    flights.run(
        "key",
        [&](Gate& gate) {
          closedPhase.countDown(); // a flight with a gate starts closed
          toOpen.wait();
          gate.open();
          opened.countDown();
          release.wait();
          return 1;
        },
        [] {});
  });
  closedPhase.wait();
  int joins = 0;
  CHECK(flights.run(
            "key", [] { return 2; }, [&] { ++joins; }) == 2); // ran its own work
  CHECK(joins == 0);
  CHECK(flights.followers("key") == 0);
  toOpen.countDown();
  opened.wait();
  int joined = 0;
  std::thread follower([&] {
    joined = flights.run(
        "key", [] { return 3; }, [&] { ++joins; });
  });
  waitUntil([&] { return flights.followers("key") == 1; });
  release.countDown();
  leader.join();
  follower.join();
  CHECK(joined == 1); // the leader's result
  CHECK(joins == 1);
  CHECK(flights.inFlight() == 0);
}

TEST_CASE("work about to wait merges into an open call of its key and takes that call's result") {
  using Gate = SingleFlight<int>::Gate;
  SingleFlight<int> flights;
  testsupport::Latch bothStarted(2), opened(1), release(1);
  std::thread leader([&] {
    flights.run(
        "key",
        [&](Gate& gate) {
          bothStarted.arriveAndWait(); // neither call is in the table yet: both run
          gate.open();                 // the leader waits first: it enters the table
          opened.countDown();
          release.wait();
          return 1;
        },
        [] {});
  });
  int joins = 0;
  bool merged = false;
  int got = 0;
  std::thread late([&] {
    got = flights.run(
        "key",
        [&](Gate& gate) {
          bothStarted.arriveAndWait();
          opened.wait();
          merged = gate.merge();     // about to wait as well: share the leader's wait instead
          CHECK_FALSE(gate.merge()); // once only
          return 2;
        },
        [&] { ++joins; });
  });
  waitUntil([&] { return flights.followers("key") == 1; });
  release.countDown();
  leader.join();
  late.join();
  CHECK(merged);
  CHECK(got == 1); // the leader's result, not its own work's
  CHECK(joins == 1);
  CHECK(flights.inFlight() == 0);

  // Nothing to merge into: no call in the table, or only a closed one.
  int alone = flights.run(
      "key",
      [](Gate& gate) {
        CHECK_FALSE(gate.merge());
        return 3;
      },
      [] {});
  CHECK(alone == 3);
  // A call in the table never merges: callers may be waiting for it.
  CHECK(flights.run(
            "other",
            [](Gate& gate) {
              gate.open();
              return gate.merge() ? 0 : 4;
            },
            [] {}) == 4);
}

TEST_CASE("work that runs its own key again throws, with or without a flight") {
  using Gate = SingleFlight<int>::Gate;
  SingleFlight<int> flights;
  auto reenter = [&](Gate&) {
    return flights.run(
        "key", [] { return 0; }, [] {});
  };
  CHECK_THROWS_AS(flights.run("key", reenter, [] {}), cacheaside::Error);
  // A caller sent off by a closed flight runs without one, and is still caught.
  testsupport::Latch running(1), release(1);
  std::thread leader([&] {
    flights.run(
        "key",
        [&](Gate&) {
          running.countDown();
          release.wait();
          return 1;
        },
        [] {});
  });
  running.wait();
  CHECK_THROWS_AS(flights.run("key", reenter, [] {}), cacheaside::Error);
  CHECK(flights.run(
            "other", [] { return 5; }, [] {}) == 5); // the list is unwound
  release.countDown();
  leader.join();
  CHECK(flights.inFlight() == 0);
}

TEST_CASE("a gated call is outside the table until it opens or holds: later callers run alone") {
  using Gate = SingleFlight<int>::Gate;
  SingleFlight<int> flights;
  testsupport::Latch started(1), release(1);
  std::thread first([&] {
    flights.run(
        "key",
        [&](Gate&) {
          started.countDown();
          release.wait();
          return 1;
        },
        [] {}, true, std::chrono::seconds(10));
  });
  started.wait();
  CHECK(flights.inFlight() == 0); // nothing allocated for a call that never opens (a hit)
  int joins = 0;
  CHECK(flights.run(
            "key", [](Gate&) { return 2; }, [&] { ++joins; }, true, std::chrono::seconds(10)) == 2);
  CHECK(joins == 0);
  release.countDown();
  first.join();
}

TEST_CASE("a caller held behind a read joins the wait that follows it") {
  using Gate = SingleFlight<int>::Gate;
  SingleFlight<int> flights;
  testsupport::Latch holding(1), toOpen(1), release(1);
  std::thread leader([&] {
    flights.run(
        "key",
        [&](Gate& gate) {
          gate.hold(); // a second read: the key was missing
          holding.countDown();
          toOpen.wait();
          gate.open(); // a wait for another caller's load
          release.wait();
          return 1;
        },
        [] {});
  });
  holding.wait();
  std::atomic<int> joins{0};
  int got = 0;
  std::thread follower([&] {
    got = flights.run(
        "key", [](Gate&) { return 2; }, [&] { ++joins; }, true, std::chrono::seconds(20));
  });
  waitUntil([&] { return flights.holding("key") == 1; });
  CHECK(joins == 0); // held, not joined
  toOpen.countDown();
  waitUntil([&] { return flights.followers("key") == 1; });
  release.countDown();
  leader.join();
  follower.join();
  CHECK(got == 1);
  CHECK(joins == 1);
  CHECK(flights.inFlight() == 0);
}

TEST_CASE("a caller held behind a call that closes or finishes runs on its own") {
  using Gate = SingleFlight<int>::Gate;
  SingleFlight<int> flights;
  for (const bool closes : {true, false}) {
    INFO((closes ? "closes" : "finishes"));
    testsupport::Latch holding(1), toEnd(1), release(1);
    std::thread leader([&] {
      flights.run(
          "key",
          [&](Gate& gate) {
            gate.hold();
            holding.countDown();
            toEnd.wait();
            if (closes) {
              gate.close();
              release.wait();
            }
            return 1;
          },
          [] {});
    });
    holding.wait();
    std::atomic<int> joins{0};
    int got = 0;
    std::thread follower([&] {
      got = flights.run(
          "key", [](Gate&) { return 2; }, [&] { ++joins; }, true, std::chrono::seconds(20));
    });
    waitUntil([&] { return flights.holding("key") == 1; });
    toEnd.countDown();
    follower.join(); // ran its own work, whether the leader is still running or not
    release.countDown();
    leader.join();
    CHECK(got == 2);
    CHECK(joins == 0);
    CHECK(flights.inFlight() == 0);
  }
}

TEST_CASE("a held caller runs on its own once its hold limit passes") {
  using Gate = SingleFlight<int>::Gate;
  SingleFlight<int> flights;
  testsupport::Latch holding(1), release(1);
  std::thread leader([&] {
    flights.run(
        "key",
        [&](Gate& gate) {
          gate.hold();
          holding.countDown();
          release.wait();
          return 1;
        },
        [] {});
  });
  holding.wait();
  // The leader stays held until the follower is done: only the limit can end the hold.
  CHECK(flights.run(
            "key", [](Gate&) { return 2; }, [] {}, true, std::chrono::milliseconds(20)) == 2);
  release.countDown();
  leader.join();
}
