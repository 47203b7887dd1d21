// HiredisClient at the edges: timeouts are deadlines for a whole call, a busy pool is told apart
// from a slow Redis, and a forked child never shares a connection with its parent.

#include "support/catch.hpp"
#include "support/fake_server.hpp"
#include "support/test_redis.hpp"

#include <cacheaside/client/hiredis.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

using cacheaside::HiredisClient;
using cacheaside::HiredisOptions;
using cacheaside::Reply;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

// A server that answers whatever it receives with `reply`, one byte every 40 ms.
testsupport::FakeServer::Handler trickle(std::string reply) {
  return [reply](testsupport::FakeServer::Connection& c) {
    while (!c.receive().empty()) {
      for (const char byte : reply) {
        if (!c.pause(40ms) || !c.send(std::string_view(&byte, 1))) {
          return;
        }
      }
    }
  };
}

// A server that reads requests and never answers.
void silent(testsupport::FakeServer::Connection& c) {
  c.holdOpen();
}

HiredisOptions fakeOptions(const testsupport::FakeServer& server) {
  return testsupport::clientOptions(server.host(), server.port());
}

// Milliseconds since `start` (a number, so that a failed check prints it).
long long since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

} // namespace

TEST_CASE("a reply trickling in byte by byte fails at the command deadline, not per byte") {
  // 27 bytes at 40 ms each: 1.08 s in all, yet every single read waits less than 50 ms.
  testsupport::FakeServer server(trickle(testsupport::bulk("01234567890123456789")));
  auto o = fakeOptions(server);
  o.commandTimeout = 50ms;
  HiredisClient client(o);
  const auto start = Clock::now();
  CHECK_THROWS_AS(testsupport::cmd(client, {"GET", "k"}), cacheaside::TimeoutError);
  CHECK(since(start) < 400);
}

TEST_CASE("a pipeline's replies share one deadline: ten replies 40 ms apart exceed 100 ms") {
  testsupport::FakeServer server([](testsupport::FakeServer::Connection& c) {
    if (c.receive().empty()) {
      return;
    }
    for (int i = 0; i < 10; ++i) {
      if (!c.pause(40ms) || !c.send("+PONG\r\n")) {
        return;
      }
    }
    c.holdOpen();
  });
  auto o = fakeOptions(server);
  o.commandTimeout = 100ms;
  HiredisClient client(o);
  const std::vector<cacheaside::Command> pings(10, cacheaside::Command{{}, {"PING"}});
  const auto start = Clock::now();
  CHECK_THROWS_AS(client.pipeline(pings), cacheaside::TimeoutError);
  CHECK(since(start) < 400);
}

TEST_CASE("a server that never answers costs one command timeout, and its connection is dropped") {
  testsupport::FakeServer server(silent);
  auto o = fakeOptions(server);
  o.commandTimeout = 50ms;
  o.poolSize = 1;
  HiredisClient client(o);
  for (int i = 0; i < 2; ++i) {
    const auto start = Clock::now();
    CHECK_THROWS_AS(testsupport::cmd(client, {"GET", "k"}), cacheaside::TimeoutError);
    CHECK(since(start) < 400);
  }
  // A connection that timed out may still receive the late reply: it is never reused.
  CHECK(server.accepted() == 2);
}

TEST_CASE("a 20 s command timeout ends on time, not on the kernel's coarse timers") {
  // A socket receive timeout of seconds runs on a coarse kernel timer (up to 12.5 % late: 2 s
  // of a 20 s timeout at HZ 250); the client must wait in short steps instead.
  testsupport::FakeServer server(silent);
  auto o = fakeOptions(server);
  o.commandTimeout = 20s;
  o.connectTimeout = 20s;
  HiredisClient client(o);
  const auto start = Clock::now();
  CHECK_THROWS_AS(testsupport::cmd(client, {"GET", "k"}), cacheaside::TimeoutError);
  CHECK(since(start) < 20400);
}

TEST_CASE("AUTH and SELECT of a new connection are bounded by the connect timeout") {
  testsupport::FakeServer server(trickle("+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n"));
  auto o = fakeOptions(server);
  o.password = "secret";
  o.db = 2;
  o.connectTimeout = 50ms;
  o.commandTimeout = 5s;
  HiredisClient client(o);
  const auto start = Clock::now();
  CHECK_THROWS_AS(testsupport::cmd(client, {"GET", "k"}), cacheaside::TimeoutError);
  CHECK(since(start) < 400);
}

TEST_CASE("a call that must open a connection finishes within commandTimeout, connect included") {
  testsupport::FakeServer server(trickle("+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n"));
  auto o = fakeOptions(server);
  o.password = "secret";
  o.connectTimeout = 5s;
  o.commandTimeout = 50ms;
  HiredisClient client(o);
  const auto start = Clock::now();
  CHECK_THROWS_AS(testsupport::cmd(client, {"GET", "k"}), cacheaside::TimeoutError);
  CHECK(since(start) < 400);
}

TEST_CASE("a slow or absent server is a TimeoutError or a ConnectionError, not a busy pool") {
  testsupport::FakeServer server(silent);
  auto o = fakeOptions(server);
  o.commandTimeout = 50ms;
  HiredisClient slow(o);
  try {
    testsupport::cmd(slow, {"GET", "k"});
    FAIL("a silent server answered");
  } catch (const cacheaside::PoolExhaustedError&) {
    FAIL("a slow server was reported as a busy pool");
  } catch (const cacheaside::TimeoutError&) {
    SUCCEED("timed out");
  }
  HiredisOptions nothing;
  nothing.port = testsupport::freeLoopbackPort();
  HiredisClient absent(nothing);
  try {
    testsupport::cmd(absent, {"GET", "k"});
    FAIL("connected to nothing");
  } catch (const cacheaside::TimeoutError&) {
    FAIL("a refused connection was reported as a timeout");
  } catch (const cacheaside::ConnectionError&) {
    SUCCEED("refused");
  }
}

TEST_CASE("every pooled connection busy is PoolExhaustedError after poolWaitTimeout, locally") {
  std::atomic<bool> received{false};
  std::atomic<bool> release{false};
  testsupport::FakeServer server([&](testsupport::FakeServer::Connection& c) {
    if (c.receive().empty()) {
      return;
    }
    received = true;
    while (!release && c.pause(2ms)) {
    }
    c.send("+held\r\n");
    c.holdOpen();
  });
  auto o = fakeOptions(server);
  o.poolSize = 1;
  o.poolWaitTimeout = 50ms;
  HiredisClient client(o);
  std::string heldReply;
  std::thread holder([&] { heldReply = testsupport::cmd(client, {"GET", "held"}).str; });
  REQUIRE(testsupport::eventually([&] { return received.load(); }));
  const auto start = Clock::now();
  CHECK_THROWS_AS(testsupport::cmd(client, {"GET", "other"}), cacheaside::PoolExhaustedError);
  const auto waited = since(start);
  CHECK(waited >= 45);
  CHECK(waited < 400);
  release = true;
  holder.join();
  CHECK(heldReply == "held");
  CHECK(server.accepted() == 1); // the busy pool opened no extra connection
}

TEST_CASE("a forked child does not use the connection its parent left idle in the pool") {
  auto o = testsupport::clientOptions();
  o.poolSize = 1;
  HiredisClient client(o);
  const long long parentId = testsupport::cmd(client, {"CLIENT", "ID"}).integer;
  REQUIRE(parentId > 0);
  std::fflush(nullptr); // the child must not repeat output buffered before the fork
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int code = 3;
    try {
      const Reply r = testsupport::cmd(client, {"CLIENT", "ID"});
      code = r.type == Reply::Type::Integer && r.integer != parentId ? 0 : 1;
    } catch (...) {
      code = 2;
    }
    ::_exit(code);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  // The child closed only its copy: the parent's connection is still open and still its own.
  CHECK(testsupport::cmd(client, {"CLIENT", "ID"}).integer == parentId);
}

TEST_CASE("parent and forked child using one client at once each read only their own replies") {
  auto o = testsupport::clientOptions();
  o.poolSize = 4;
  HiredisClient client(o);
  const std::string ns = testsupport::uniqueNamespace("fork");
  CHECK(testsupport::cmd(client, {"PING"}).str == "PONG"); // a connection idle in the pool
  constexpr int kRounds = 3000;
  // Each process SETs and GETs its own values; any reply read by the wrong process mismatches.
  const auto run = [&](const std::string& who) {
    int mismatches = 0;
    for (int i = 0; i < kRounds; ++i) {
      const std::string key = ns + ":" + who + ":" + std::to_string(i);
      const std::string value = who + "-" + std::to_string(i);
      try {
        const Reply set = testsupport::cmd(client, {"SET", key, value});
        const Reply get = testsupport::cmd(client, {"GET", key});
        mismatches += set.str == "OK" && get.str == value ? 0 : 1;
      } catch (const cacheaside::Error&) {
        ++mismatches;
      }
    }
    return mismatches;
  };
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  std::fflush(nullptr); // the child must not repeat output buffered before the fork
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(ready[0]);
    const char byte = 1;
    int code = ::write(ready[1], &byte, 1) == 1 ? 0 : 3;
    try {
      code = code != 0 ? code : (run("child") == 0 ? 0 : 1);
    } catch (...) {
      code = 2;
    }
    ::_exit(code);
  }
  ::close(ready[1]);
  char byte = 0;
  REQUIRE(::read(ready[0], &byte, 1) == 1); // the child has started: run at the same time
  ::close(ready[0]);
  const int parentMismatches = run("parent");
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(parentMismatches == 0);
}
