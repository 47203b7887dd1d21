#include "support/catch.hpp"
#include "support/test_redis.hpp"

#include <cacheaside/cacheaside.hpp>
#include <cacheaside/codec/msgpack.hpp>
#include <cacheaside/hiredis_client.hpp>

#include <string>
#include <vector>

using cacheaside::CacheAside;
using cacheaside::HiredisClient;

// A named namespace: an anonymous one would leave the unused from_json to warn about (Clang).
namespace msgpack_cxx_redis_test {

struct Item {
  int id = 0;
  std::string name;
  double price = 0;
  MSGPACK_DEFINE(id, name, price)
  NLOHMANN_DEFINE_TYPE_INTRUSIVE(Item, id, name, price)
  bool operator==(const Item& o) const { return id == o.id && name == o.name && price == o.price; }
};

using Items = std::vector<Item>;
using FastCache = CacheAside<Items, cacheaside::MsgpackSerializer<Items>>;

const Items kItems{{1, "kettle", 24.5}, {2, std::string("nul \0 byte", 10), 3}};

} // namespace msgpack_cxx_redis_test

using msgpack_cxx_redis_test::FastCache;
using msgpack_cxx_redis_test::Items;
using msgpack_cxx_redis_test::kItems;

TEST_CASE("msgpack-cxx values round-trip through Redis, stored after the envelope header") {
  HiredisClient client(testsupport::clientOptions());
  const auto options = testsupport::cacheOptions("msgpack-cxx");
  FastCache cache(client, options);
  int loads = 0;
  const auto load = [&] {
    ++loads;
    return kItems;
  };
  CHECK(cache.getOrLoad("list", load) == kItems);
  CHECK(cache.getOrLoad("list", load) == kItems);
  CHECK(loads == 1);
  CHECK(cache.stats().hits == 1);
  CHECK(cache.stats().decodeFailures == 0);

  const std::string stored =
      testsupport::cmd(client, {"GET", cacheaside::store::valueKey(options.keyNamespace, "list")})
          .str;
  std::string expected;
  cacheaside::MsgpackSerializer<Items>::encode(kItems, expected);
  CHECK(cacheaside::codec::inspect(stored)->payload == expected);
}

TEST_CASE("records another serializer wrote are msgpack-cxx decode failures, then replaced") {
  HiredisClient client(testsupport::clientOptions());
  const auto options = testsupport::cacheOptions("msgpack-cxx-mixed");
  CacheAside<Items> json(client, options);
  CacheAside<Items, cacheaside::MsgPackSerializer<Items>> nlohmannMsgpack(client, options);
  FastCache fast(client, options);
  const Items replaced{{9, "replaced", 1}};

  json.set("j", kItems, std::chrono::minutes(1));
  CHECK(fast.getOrLoad("j", [&] { return replaced; }) == replaced);
  CHECK(fast.stats().decodeFailures == 1);

  // nlohmann writes each Item as a map with its member names; MSGPACK_DEFINE reads arrays.
  nlohmannMsgpack.set("m", kItems, std::chrono::minutes(1));
  CHECK(fast.getOrLoad("m", [&] { return replaced; }) == replaced);
  CHECK(fast.stats().decodeFailures == 2);

  CHECK(fast.get("j") == replaced);
  CHECK(fast.get("m") == replaced);
  CHECK(fast.stats().decodeFailures == 2);
}
