#pragma once
// The Redis that integration tests share: the one named by CACHEASIDE_TEST_REDIS=host:port
// (scripts/test.sh starts it), or else a private server started once for this process.

#include "cmd.hpp"
#include "redis_server.hpp"

#include <cacheaside/hiredis_client.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <unistd.h>

namespace testsupport {

struct RedisAddress {
  std::string host;
  int port = 0;
};

inline RedisAddress testRedis() {
  if (const char* env = std::getenv("CACHEASIDE_TEST_REDIS"); env != nullptr && *env != '\0') {
    const std::string s(env);
    const auto colon = s.rfind(':');
    if (colon == std::string::npos) {
      throw std::runtime_error("CACHEASIDE_TEST_REDIS must be host:port, got " + s);
    }
    return {s.substr(0, colon), std::stoi(s.substr(colon + 1))};
  }
  static RedisServer server;
  return {server.host(), server.port()};
}

// Client options for tests: timeouts long enough for a loaded 2-core machine under sanitizers,
// so that only the tests about timeouts ever see one.
inline cacheaside::HiredisOptions clientOptions(const std::string& host, int port) {
  cacheaside::HiredisOptions o;
  o.host = host;
  o.port = port;
  o.connectTimeout = std::chrono::seconds(2);
  o.commandTimeout = std::chrono::seconds(5);
  o.poolWaitTimeout = std::chrono::seconds(5);
  o.poolSize = 16;
  return o;
}

inline cacheaside::HiredisOptions clientOptions() {
  const RedisAddress a = testRedis();
  return clientOptions(a.host, a.port);
}

// A key namespace no other test (or earlier run) uses.
inline std::string uniqueNamespace(const std::string& prefix) {
  static std::atomic<unsigned> counter{0};
  std::random_device rd;
  return "test:" + prefix + ":" + std::to_string(::getpid()) + ":" + std::to_string(rd()) + ":" +
         std::to_string(counter++);
}

} // namespace testsupport

#include <cacheaside/options.hpp>

namespace testsupport {

// Cache options with a fresh namespace; the rest as the library's defaults.
inline cacheaside::CacheOptions cacheOptions(const std::string& prefix) {
  cacheaside::CacheOptions o;
  o.keyNamespace = uniqueNamespace(prefix);
  return o;
}

// Yields until pred() holds or a generous deadline passes: waits for an observable event, never
// for a guessed duration. Returns whether pred() held.
template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

} // namespace testsupport
