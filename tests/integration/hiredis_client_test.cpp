#include "support/catch.hpp"
#include "support/redis_server.hpp"
#include "support/test_redis.hpp"

#include <cacheaside/hiredis_client.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

using cacheaside::HiredisClient;
using cacheaside::HiredisOptions;
using cacheaside::Reply;
using namespace std::chrono_literals;

TEST_CASE("commands are binary-safe argv: NUL, CR/LF and 1 MB arguments round-trip") {
  HiredisClient client(testsupport::clientOptions());
  const std::string key = testsupport::uniqueNamespace("argv") + std::string(":\0\r\n", 4);
  const std::string value = std::string("\0\r\n$3\r\n", 7) + std::string(1 << 20, 'v');
  CHECK(testsupport::cmd(client, {"SET", key, value}).str == "OK");
  const Reply r = testsupport::cmd(client, {"GET", key});
  CHECK(r.type == Reply::Type::String);
  CHECK(r.str == value);
  CHECK(testsupport::cmd(client, {"DEL", key}).integer == 1);
  CHECK(testsupport::cmd(client, {"GET", key}).isNil());
}

TEST_CASE("a pipeline returns every reply in order, error replies included, in one call") {
  HiredisClient client(testsupport::clientOptions());
  const std::string key = testsupport::uniqueNamespace("pipe");
  const std::vector<Reply> replies = client.pipeline({{key, {"SET", key, "1"}},
                                                      {key, {"INCRBY", key, "not a number"}},
                                                      {key, {"INCR", key}},
                                                      {key, {"DEL", key}}});
  REQUIRE(replies.size() == 4);
  CHECK(replies[0].type == Reply::Type::Status);
  CHECK(replies[1].isError());
  CHECK(replies[2].integer == 2);
  CHECK(replies[3].integer == 1);
}

TEST_CASE("an error reply is returned, not thrown, and the connection stays usable") {
  HiredisClient client(testsupport::clientOptions());
  const Reply r = testsupport::cmd(client, {"NOSUCHCOMMAND", "x"});
  CHECK(r.isError());
  CHECK(r.str.find("unknown command") != std::string::npos);
  CHECK(testsupport::cmd(client, {"PING"}).str == "PONG");
}

TEST_CASE("nothing listening is a ConnectionError naming the endpoint") {
  HiredisOptions o;
  o.port = testsupport::freeLoopbackPort();
  HiredisClient client(o);
  try {
    testsupport::cmd(client, {"PING"});
    FAIL("connected to nothing");
  } catch (const cacheaside::ConnectionError& e) {
    CHECK(std::string(e.what()).find(std::to_string(o.port)) != std::string::npos);
  }
}

TEST_CASE("a command slower than the command timeout is a TimeoutError, and the pool recovers") {
  testsupport::RedisServer server(testsupport::enableDebugCommandArgs());
  auto o = testsupport::clientOptions(server.host(), server.port());
  o.commandTimeout = 100ms;
  o.poolSize = 1;
  HiredisClient client(o);
  CHECK_THROWS_AS(testsupport::cmd(client, {"DEBUG", "SLEEP", "0.5"}), cacheaside::TimeoutError);
  // The timed-out connection was dropped (its late reply would be read as the next one's).
  CHECK(testsupport::eventually([&] {
    try {
      return testsupport::cmd(client, {"ECHO", "after"}).str == "after";
    } catch (const cacheaside::ConnectionError&) {
      return false;
    }
  }));
}

TEST_CASE("AUTH with a password, with an ACL user, and SELECT of a database") {
  testsupport::RedisServer server({"--requirepass", "s3cret pass"});
  auto o = testsupport::clientOptions(server.host(), server.port());
  {
    HiredisClient noPassword(o);
    const Reply r = testsupport::cmd(noPassword, {"PING"});
    CHECK(r.isError()); // NOAUTH
  }
  o.password = "wrong";
  CHECK_THROWS_AS(HiredisClient(o).command({{}, {"PING"}}), cacheaside::ConnectionError);
  o.password = "s3cret pass";
  o.db = 3;
  HiredisClient client(o);
  CHECK(testsupport::cmd(client, {"SET", "k", "in db 3"}).str == "OK");
  CHECK(testsupport::cmd(client, {"SELECT", "0"}).str == "OK");
  CHECK(testsupport::cmd(client, {"GET", "k"}).isNil());
  CHECK(testsupport::cmd(client, {"SELECT", "3"}).str == "OK");

  CHECK(testsupport::cmd(client, {"ACL", "SETUSER", "app", "on", ">app pass", "~*", "+@all"}).str ==
        "OK");
  auto acl = o;
  acl.user = "app";
  acl.password = "app pass";
  HiredisClient asApp(acl);
  CHECK(testsupport::cmd(asApp, {"ACL", "WHOAMI"}).str == "app");
  CHECK(testsupport::cmd(asApp, {"GET", "k"}).str == "in db 3");
}

TEST_CASE("a Unix socket works in place of TCP") {
  const std::string path = "/tmp/cacheaside-test-" + std::to_string(::getpid()) + ".sock";
  testsupport::RedisServer server({"--unixsocket", path, "--unixsocketperm", "700"});
  HiredisOptions o;
  o.unixSocket = path;
  o.commandTimeout = 2s;
  HiredisClient client(o);
  CHECK(testsupport::cmd(client, {"PING"}).str == "PONG");
}

TEST_CASE("the pool serves many threads with at most poolSize connections") {
  testsupport::RedisServer server;
  auto o = testsupport::clientOptions(server.host(), server.port());
  o.poolSize = 3;
  HiredisClient client(o);
  HiredisClient observer(testsupport::clientOptions(server.host(), server.port()));
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        const std::string v = std::to_string(t * 1000 + i);
        if (testsupport::cmd(client, {"ECHO", v}).str == v) {
          ++ok;
        }
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  CHECK(ok == 8 * 200);
  // connected_clients counts the observer itself too.
  const std::string info = testsupport::cmd(observer, {"INFO", "clients"}).str;
  const auto at = info.find("connected_clients:");
  REQUIRE(at != std::string::npos);
  CHECK(std::stoi(info.substr(at + 18)) <= 3 + 1);
}

TEST_CASE("a borrower finding every connection busy gets a TimeoutError after poolWaitTimeout") {
  testsupport::RedisServer server;
  auto o = testsupport::clientOptions(server.host(), server.port());
  o.poolSize = 1;
  o.poolWaitTimeout = 20ms;
  HiredisClient client(o);
  HiredisClient other(testsupport::clientOptions(server.host(), server.port()));
  std::thread blocked([&] { testsupport::cmd(client, {"BLPOP", "wake", "10"}); });
  REQUIRE(testsupport::eventually([&] {
    return testsupport::cmd(other, {"CLIENT", "LIST"}).str.find("cmd=blpop") != std::string::npos;
  }));
  CHECK_THROWS_AS(testsupport::cmd(client, {"PING"}), cacheaside::TimeoutError);
  testsupport::cmd(other, {"LPUSH", "wake", "1"});
  blocked.join();
  CHECK(testsupport::cmd(client, {"PING"}).str == "PONG");
}

TEST_CASE("invalid client options are rejected") {
  HiredisOptions o;
  o.poolSize = 0;
  CHECK_THROWS_AS(HiredisClient(o), std::invalid_argument);
  o.poolSize = 1;
  o.commandTimeout = 0ms;
  CHECK_THROWS_AS(HiredisClient(o), std::invalid_argument);
}

TEST_CASE("connections the server closed while idle are replaced before use, not failed") {
  // checkIdleAfter 0: checked however recently used (the default, 1 ms: see the next test).
  testsupport::RedisServer server;
  auto o = testsupport::clientOptions(server.host(), server.port());
  o.poolSize = 4;
  o.checkIdleAfter = std::chrono::milliseconds(0);
  HiredisClient client(o);
  std::vector<std::thread> warm;
  for (int t = 0; t < 4; ++t) {
    warm.emplace_back([&] { testsupport::cmd(client, {"PING"}); });
  }
  for (auto& th : warm) {
    th.join();
  }
  HiredisClient admin(testsupport::clientOptions(server.host(), server.port()));
  testsupport::cmd(admin, {"PING"});
  CHECK(testsupport::cmd(admin, {"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"}).integer >=
        1);
  for (int i = 0; i < 8; ++i) {
    CHECK_NOTHROW(testsupport::cmd(client, {"PING"}));
  }
}

TEST_CASE("a connection idle longer than checkIdleAfter is checked before use") {
  testsupport::RedisServer server;
  auto o = testsupport::clientOptions(server.host(), server.port());
  o.poolSize = 1;
  o.checkIdleAfter = std::chrono::milliseconds(5);
  HiredisClient client(o);
  testsupport::cmd(client, {"PING"});
  const auto idleSince = std::chrono::steady_clock::now();
  HiredisClient admin(testsupport::clientOptions(server.host(), server.port()));
  REQUIRE(testsupport::cmd(admin, {"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"}).integer ==
          1);
  // The rule is about time: the pooled connection must have been idle past checkIdleAfter.
  REQUIRE(testsupport::eventually([&] {
    return std::chrono::steady_clock::now() - idleSince > std::chrono::milliseconds(20);
  }));
  CHECK_NOTHROW(testsupport::cmd(client, {"PING"}));
}
