// Bad input gets a clear error and loses nothing: odd keys, corrupt or foreign bytes in Redis,
// other programs' data, huge values.
#include "support/catch.hpp"
#include "support/product.hpp"
#include "support/test_redis.hpp"

#include <cacheaside/cacheaside.hpp>
#include <cacheaside/hiredis_client.hpp>

#include <stdexcept>
#include <string>
#include <vector>

using cacheaside::CacheAside;
using cacheaside::HiredisClient;
using testsupport::product;
using testsupport::Product;

TEST_CASE("keys with spaces, CR/LF, quotes, NUL and non-UTF-8 bytes are distinct and binary-safe") {
  HiredisClient client(testsupport::clientOptions());
  const auto options = testsupport::cacheOptions("keys");
  CacheAside<std::string> cache(client, options);
  const std::vector<std::string> keys{"with space",
                                      "crlf\r\nSET evil 1\r\n",
                                      "\"quoted\" 'single'",
                                      std::string("nul\0byte", 8),
                                      std::string("nul\0other", 9),
                                      "\xff\xfe\x80 not utf-8",
                                      "{braces}",
                                      "}starts-with-brace",
                                      "*3\r\n$3\r\nDEL\r\n"};
  int loads = 0;
  for (const auto& key : keys) {
    CHECK(cache.getOrLoad(key, [&] {
      ++loads;
      return "value for " + key;
    }) == "value for " + key);
  }
  for (const auto& key : keys) {
    CHECK(cache.getOrLoad(key, [&] {
      ++loads;
      return std::string("reloaded");
    }) == "value for " + key);
    const std::string rk = cacheaside::store::valueKey(options.keyNamespace, key);
    CHECK(testsupport::cmd(client, {"EXISTS", rk}).integer == 1);
  }
  CHECK(loads == static_cast<int>(keys.size()));
  CHECK(testsupport::cmd(client, {"EXISTS", "evil"}).integer == 0);
}

TEST_CASE("a 1 MB key works") {
  HiredisClient client(testsupport::clientOptions());
  CacheAside<std::string> cache(client, testsupport::cacheOptions("bigkey"));
  const std::string key(1 << 20, 'k');
  int loads = 0;
  const auto load = [&] {
    ++loads;
    return std::string("v");
  };
  CHECK(cache.getOrLoad(key, load) == "v");
  CHECK(cache.getOrLoad(key, load) == "v");
  CHECK(loads == 1);
  cache.invalidate(key);
  CHECK_FALSE(cache.get(key));
}

TEST_CASE("the empty key is rejected with std::invalid_argument everywhere") {
  HiredisClient client(testsupport::clientOptions());
  CacheAside<std::string> cache(client, testsupport::cacheOptions("empty"));
  int loads = 0;
  CHECK_THROWS_AS(cache.getOrLoad("",
                                  [&] {
                                    ++loads;
                                    return std::string();
                                  }),
                  std::invalid_argument);
  CHECK(loads == 0);
  CHECK_THROWS_AS(cache.get(""), std::invalid_argument);
  CHECK_THROWS_AS(cache.set("", "x"), std::invalid_argument);
  CHECK_THROWS_AS(cache.invalidate(""), std::invalid_argument);
  CHECK_THROWS_AS(cache.invalidate({"ok", ""}), std::invalid_argument);
}

TEST_CASE("foreign bytes, another format version and an old schema are misses, then replaced") {
  HiredisClient client(testsupport::clientOptions());
  const auto options = testsupport::cacheOptions("corrupt");
  CacheAside<Product> cache(client, options);
  std::string otherVersion;
  cacheaside::envelope::appendHeader(otherVersion, cacheaside::EntryKind::Value, 0);
  otherVersion[1] = 9;
  otherVersion += R"({"id":1,"name":"n","category":"c","price":1})";
  std::string oldSchema;
  cacheaside::envelope::appendHeader(oldSchema, cacheaside::EntryKind::Value, 0);
  oldSchema += R"({"id":"one","title":"renamed field"})";
  const std::vector<std::string> corrupt{"plain text from another program",
                                         std::string("\0\x01\x02\xff", 4),
                                         otherVersion,
                                         oldSchema,
                                         std::string(1, '\xca'),
                                         std::string(100000, '\xca')};
  std::uint64_t expectedFailures = 0;
  for (std::size_t i = 0; i < corrupt.size(); ++i) {
    const std::string key = "p" + std::to_string(i);
    const std::string rk = cacheaside::store::valueKey(options.keyNamespace, key);
    testsupport::cmd(client, {"SET", rk, corrupt[i]});
    CHECK_FALSE(cache.get(key));
    ++expectedFailures;
    int loads = 0;
    const auto load = [&] {
      ++loads;
      return product(static_cast<int>(i));
    };
    CHECK(cache.getOrLoad(key, load) == product(static_cast<int>(i)));
    ++expectedFailures;
    CHECK(cache.getOrLoad(key, load) == product(static_cast<int>(i))); // overwritten: a hit
    CHECK(loads == 1);
    CHECK(testsupport::cmd(client, {"GET", rk}).str != corrupt[i]);
  }
  CHECK(cache.stats().decodeFailures == expectedFailures);
}

TEST_CASE("another program's data of another type is left alone and the loader answers") {
  HiredisClient client(testsupport::clientOptions());
  const auto options = testsupport::cacheOptions("wrongtype");
  CacheAside<std::string> cache(client, options);
  const std::string rk = cacheaside::store::valueKey(options.keyNamespace, "list");
  testsupport::cmd(client, {"RPUSH", rk, "a", "b"});
  CHECK(cache.getOrLoad("list", [] { return std::string("from loader"); }) == "from loader");
  CHECK(cache.stats().redisErrors == 1);
  CHECK(testsupport::cmd(client, {"LLEN", rk}).integer == 2);
}

TEST_CASE("a 20 MB value round-trips when maxValueBytes allows it") {
  HiredisClient client(testsupport::clientOptions());
  auto options = testsupport::cacheOptions("huge");
  options.maxValueBytes = 64u << 20;
  CacheAside<std::string> cache(client, options);
  std::string huge(20u << 20, '\0');
  for (std::size_t i = 0; i < huge.size(); ++i) {
    huge[i] = static_cast<char>(i * 131 % 251);
  }
  CHECK(cache.getOrLoad("huge", [&] { return huge; }) == huge);
  CHECK(cache.get("huge") == huge);
}

TEST_CASE("a value the serializer cannot encode is returned, not cached, and counted") {
  HiredisClient client(testsupport::clientOptions());
  const auto options = testsupport::cacheOptions("unencodable");
  CacheAside<std::vector<std::string>> cache(client, options);
  // nlohmann::json refuses to dump invalid UTF-8.
  const std::vector<std::string> bad{"\xff\xfe"};
  CHECK(cache.getOrLoad("bad", [&] { return bad; }) == bad);
  CHECK(cache.stats().encodeFailures == 1);
  const std::string rk = cacheaside::store::valueKey(options.keyNamespace, "bad");
  CHECK(testsupport::cmd(client, {"EXISTS", rk}).integer == 0);
  CHECK_THROWS_AS(cache.set("bad", bad), cacheaside::Error);
}
