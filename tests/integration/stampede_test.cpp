// Stampede: 4 processes x 50 threads call getOrLoad on cold keys at once. Processes are forked
// before any thread exists; a pipe closed by the parent releases them all together.
#include "support/catch.hpp"
#include "support/sync.hpp"
#include "support/test_clients.hpp"
#include "support/test_redis.hpp"

#include <cacheaside/cacheaside.hpp>
#include <cacheaside/hiredis_client.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

using cacheaside::CacheAside;

namespace {

constexpr int kProcesses = 4;
constexpr int kThreads = 50;

// Runs in a forked child: kThreads callers, released by `go` reaching EOF. Returns how many
// callers got the right value.
int runChild(const std::string& kind, const std::string& ns, int keys, int readyFd, int goFd) {
  testsupport::TestClient client(kind);
  cacheaside::CacheOptions options;
  options.keyNamespace = ns;
  options.waitBudget = std::chrono::seconds(30); // a slow machine must not turn waits into loads
  CacheAside<std::string> cache(client, options);
  std::atomic<int> correct{0};
  testsupport::Latch started(kThreads + 1);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string key = "key" + std::to_string(t % keys);
      started.arriveAndWait();
      const std::string value = cache.getOrLoad(key, [&] {
        // Counted in Redis, across processes; then as slow as a real query.
        testsupport::cmd(client, {"INCR", ns + ":loads"});
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        return "value of " + key;
      });
      if (value == "value of " + key) {
        ++correct;
      }
    });
  }
  char byte = 1;
  if (::write(readyFd, &byte, 1) != 1) {
    return -1;
  }
  while (::read(goFd, &byte, 1) > 0) {
  }
  started.arriveAndWait();
  for (auto& th : threads) {
    th.join();
  }
  return correct.load();
}

// Forks the children, releases them together, and returns the total of correct answers.
int stampede(const std::string& kind, const std::string& ns, int keys) {
  // A private server or cluster, if any, starts here, so children share it.
  if (kind == "cluster") {
    testsupport::testClusterSeed();
  } else {
    testsupport::testRedis();
  }
  int ready[2], go[2], results[2];
  REQUIRE(::pipe(ready) == 0);
  REQUIRE(::pipe(go) == 0);
  REQUIRE(::pipe(results) == 0);
  std::vector<pid_t> children;
  for (int p = 0; p < kProcesses; ++p) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(go[1]);
      const int correct = runChild(kind, ns, keys, ready[1], go[0]);
      const bool sent = ::write(results[1], &correct, sizeof correct) == sizeof correct;
      ::_exit(sent ? 0 : 1);
    }
    children.push_back(pid);
  }
  ::close(go[0]);
  for (int p = 0; p < kProcesses; ++p) {
    char byte = 0;
    REQUIRE(::read(ready[0], &byte, 1) == 1);
  }
  ::close(go[1]); // every child is ready: release them all at once
  int total = 0;
  for (int p = 0; p < kProcesses; ++p) {
    int correct = 0;
    REQUIRE(::read(results[0], &correct, sizeof correct) == sizeof correct);
    total += correct;
  }
  for (pid_t pid : children) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  }
  for (int fd : {ready[0], ready[1], results[0], results[1]}) {
    ::close(fd);
  }
  return total;
}

long long loadsCounted(cacheaside::RedisClient& client, const std::string& ns) {
  const cacheaside::Reply r = testsupport::cmd(client, {"GET", ns + ":loads"});
  return r.isNil() ? 0 : std::stoll(r.str);
}

} // namespace

TEST_CASE("a stampede of 4 processes x 50 threads on one cold key loads it once") {
  CACHEASIDE_EACH_CLIENT(client);
  const std::string ns = testsupport::uniqueNamespace("stampede1");
  CHECK(stampede(client.kind(), ns, 1) == kProcesses * kThreads);
  CHECK(loadsCounted(client, ns) == 1);
}

TEST_CASE("a stampede of 4 processes x 50 threads on 20 cold keys loads each once") {
  CACHEASIDE_EACH_CLIENT(client);
  const std::string ns = testsupport::uniqueNamespace("stampede20");
  CHECK(stampede(client.kind(), ns, 20) == kProcesses * kThreads);
  CHECK(loadsCounted(client, ns) == 20);
}
