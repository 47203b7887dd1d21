// Compressed records through a real Redis: flagged in the header, decoded by caches that have
// the compressor, counted as decode failures (and replaced) by caches that do not.
#include "support/catch.hpp"
#include "support/test_redis.hpp"

#include <cacheaside/cacheaside.hpp>
#include <cacheaside/codec/lz4.hpp>
#include <cacheaside/codec/zstd.hpp>
#include <cacheaside/hiredis_client.hpp>

#include <memory>
#include <string>

using cacheaside::CacheAside;
using cacheaside::HiredisClient;

namespace {
std::string bigJson(std::size_t bytes) {
  std::string out = "[";
  for (int i = 0; out.size() < bytes; ++i) {
    out += "{\"id\":" + std::to_string(i) + ",\"name\":\"product " + std::to_string(i) +
           "\",\"category\":\"books\",\"price\":12.5},";
  }
  out.back() = ']';
  return out;
}
} // namespace

TEST_CASE("values above the threshold are stored compressed and read back, small ones are not") {
  HiredisClient client(testsupport::clientOptions());
  for (const std::shared_ptr<const cacheaside::Compressor>& compressor :
       {std::shared_ptr<const cacheaside::Compressor>(
            std::make_shared<cacheaside::Lz4Compressor>()),
        std::shared_ptr<const cacheaside::Compressor>(
            std::make_shared<cacheaside::ZstdCompressor>())}) {
    auto options = testsupport::cacheOptions("compressed");
    options.compressor = compressor;
    options.compressAbove = 1024;
    CacheAside<std::string> cache(client, options);
    const std::string big = bigJson(64 * 1024);
    CHECK(cache.getOrLoad("big", [&] { return big; }) == big);
    CHECK(cache.getOrLoad("small", [] { return std::string("tiny"); }) == "tiny");

    const std::string stored =
        testsupport::cmd(client, {"GET", cacheaside::store::valueKey(options.keyNamespace, "big")})
            .str;
    const auto env = cacheaside::codec::inspect(stored);
    REQUIRE(env);
    CHECK(env->compressor == compressor->id());
    CHECK(stored.size() < big.size() / 4);
    const auto small = cacheaside::codec::inspect(
        testsupport::cmd(client,
                         {"GET", cacheaside::store::valueKey(options.keyNamespace, "small")})
            .str);
    REQUIRE(small);
    CHECK(small->compressor == 0);

    CHECK(cache.get("big") == std::optional<std::string>(big));
    CHECK(cache.getOrLoad("big", [] { return std::string("not loaded"); }) == big);

    auto plain = options; // a cache without the compressor: a miss, counted, then replaced
    plain.compressor.reset();
    CacheAside<std::string> other(client, plain);
    CHECK(other.getOrLoad("big", [] { return std::string("reloaded"); }) == "reloaded");
    CHECK(other.stats().decodeFailures == 1);
    CHECK(other.get("big") == std::optional<std::string>("reloaded"));
  }
}
