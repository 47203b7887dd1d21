#include "support/catch.hpp"
#include "support/product.hpp"
#include "support/test_redis.hpp"

#include <cacheaside/cacheaside.hpp>
#include <cacheaside/hiredis_client.hpp>

#include <string>
#include <vector>

using cacheaside::CacheAside;
using cacheaside::HiredisClient;
using testsupport::product;
using testsupport::Product;

namespace {
template <typename S> void roundTripThroughRedis(const char* name) {
  HiredisClient client(testsupport::clientOptions());
  CacheAside<std::vector<Product>, S> cache(client, testsupport::cacheOptions(name));
  const std::vector<Product> list{product(1), product(2), product(3)};
  int loads = 0;
  const auto load = [&] {
    ++loads;
    return list;
  };
  CHECK(cache.getOrLoad("list", load) == list);
  CHECK(cache.getOrLoad("list", load) == list);
  CHECK(loads == 1);
  CHECK(cache.stats().decodeFailures == 0);
}
} // namespace

TEST_CASE("JSON, MessagePack and CBOR values round-trip through Redis") {
  roundTripThroughRedis<cacheaside::JsonSerializer<std::vector<Product>>>("json");
  roundTripThroughRedis<cacheaside::MsgPackSerializer<std::vector<Product>>>("msgpack");
  roundTripThroughRedis<cacheaside::CborSerializer<std::vector<Product>>>("cbor");
}

TEST_CASE("the stored record is the envelope header followed by the serializer's bytes") {
  HiredisClient client(testsupport::clientOptions());
  const auto options = testsupport::cacheOptions("layout");
  CacheAside<std::string> strings(client, options);
  const std::string raw("raw \0 bytes \xff", 13);
  strings.getOrLoad("s", [&] { return raw; });
  const std::string stored =
      testsupport::cmd(client, {"GET", cacheaside::store::valueKey(options.keyNamespace, "s")}).str;
  const auto at = cacheaside::envelope::kExpiryStampAt + cacheaside::envelope::kExpiryStampSize;
  CHECK(stored.substr(at) == raw);
  // The server stamped the key's expiry by its own clock, within a few ms of its PTTL.
  const auto env = cacheaside::codec::inspect(stored);
  REQUIRE(env);
  const auto time = testsupport::cmd(client, {"TIME"});
  REQUIRE(time.elements.size() == 2);
  const long long serverNow =
      std::stoll(time.elements[0].str) * 1000 + std::stoll(time.elements[1].str) / 1000;
  const long long pttl =
      testsupport::cmd(client, {"PTTL", cacheaside::store::valueKey(options.keyNamespace, "s")})
          .integer;
  const auto left = static_cast<long long>(cacheaside::envelope::expiresAt(*env)) - serverNow;
  CHECK(left >= pttl - 5);
  CHECK(left <= pttl + 5);

  CacheAside<Product> products(client, options);
  products.getOrLoad("p", [] { return product(4); });
  const std::string json =
      testsupport::cmd(client, {"GET", cacheaside::store::valueKey(options.keyNamespace, "p")}).str;
  CHECK(nlohmann::json::parse(json.substr(at)) == nlohmann::json(product(4)));
}

TEST_CASE("values of one serializer read through another are decode failures, then replaced") {
  HiredisClient client(testsupport::clientOptions());
  const auto options = testsupport::cacheOptions("mixed");
  CacheAside<Product, cacheaside::MsgPackSerializer<Product>> msgpack(client, options);
  CacheAside<Product> json(client, options);
  msgpack.getOrLoad("p", [] { return product(1); });
  CHECK(json.getOrLoad("p", [] { return product(2); }) == product(2));
  CHECK(json.stats().decodeFailures == 1);
  CHECK(json.get("p") == product(2));
}
