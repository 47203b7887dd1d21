// Compressed records through a real Redis: flagged in the header, decoded by caches that have
// the compressor, counted as decode failures (and replaced) by caches that do not.
#include "support/catch.hpp"
#include "support/test_redis.hpp"

#include <cacheaside/cacheaside.hpp>
#include <cacheaside/codec/lz4.hpp>
#include <cacheaside/codec/zstd.hpp>
#include <cacheaside/hiredis_client.hpp>

#include <chrono>
#include <memory>
#include <optional>
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

// The scripts SETRANGE the expiry stamp at byte 17: every kind of record a tagged call writes
// must keep the stamp's field there (or carry none), and its payload intact.
TEST_CASE("tagged records: compressed, negative, set and refreshed keep the stamp at byte 17") {
  HiredisClient client(testsupport::clientOptions());
  auto options = testsupport::cacheOptions("stamped");
  options.compressor = std::make_shared<cacheaside::Lz4Compressor>();
  options.compressAbove = 1024;
  options.ttl = std::chrono::seconds(60);
  options.staleWindow = std::chrono::seconds(30);
  CacheAside<std::string> cache(client, options);
  cacheaside::CallOptions tagged;
  tagged.tags = {"t1", std::string(1024, 'x')};
  const auto raw = [&](const char* key) {
    return testsupport::cmd(client, {"GET", cacheaside::store::valueKey(options.keyNamespace, key)})
        .str;
  };
  const auto serverNow = [&] {
    const auto t = testsupport::cmd(client, {"TIME"});
    return std::stoll(t.elements.at(0).str) * 1000 + std::stoll(t.elements.at(1).str) / 1000;
  };
  // The stamp, in (now, now + ttl + stale + jitter]; the tags field after it; payload whole.
  const auto checkStamped = [&](const char* key, const std::string& value) {
    const std::string bytes = raw(key);
    INFO(key);
    REQUIRE(cacheaside::envelope::hasExpiryStampSlot(bytes));
    const auto env = cacheaside::codec::inspect(bytes);
    REQUIRE(env);
    const auto at = static_cast<long long>(cacheaside::envelope::expiresAt(*env));
    const long long now = serverNow();
    CHECK(at > now);
    CHECK(at <= now + 100000);
    const auto tags =
        cacheaside::envelope::findField(env->extensions, cacheaside::envelope::kTagsField);
    REQUIRE(tags);
    CHECK(cacheaside::envelope::tagGeneration(*tags, "t1"));
    CHECK(cacheaside::envelope::tagGeneration(*tags, std::string(1024, 'x')));
    CHECK(cache.get(key) == value);
  };
  const std::string big = bigJson(16 * 1024);
  CHECK(cache.getOrLoad(
            "big", [&] { return big; }, tagged) == big);
  checkStamped("big", big);
  CHECK(cache.getOrLoad(
            "small", [] { return std::string("tiny"); }, tagged) == "tiny");
  checkStamped("small", "tiny");

  CHECK_FALSE(cache.getOrLoad(
      "none", [] { return std::optional<std::string>(); }, tagged));
  const std::string negative = raw("none");
  CHECK_FALSE(cacheaside::envelope::hasExpiryStampSlot(negative));
  const auto env = cacheaside::codec::inspect(negative);
  REQUIRE(env);
  CHECK(env->kind == cacheaside::EntryKind::Negative);
  CHECK(env->payload.empty());
  CHECK(cacheaside::envelope::findField(env->extensions, cacheaside::envelope::kTagsField));

  REQUIRE(cache.set("written", big));
  CHECK(cacheaside::envelope::hasExpiryStampSlot(raw("written")));
  CHECK(cache.get("written") == big);

  // A refresh of a stale value writes a stamped, tagged record too.
  auto shortOptions = options;
  shortOptions.ttl = std::chrono::milliseconds(200);
  shortOptions.ttlJitter = 0.0;
  CacheAside<std::string> shortLived(client, shortOptions);
  int refreshes = 0;
  CHECK(shortLived.getOrLoad(
            "r", [] { return std::string("first"); }, tagged) == "first");
  REQUIRE(testsupport::eventually([&] {
    shortLived.getOrLoad(
        "r", [&] { return "again" + std::to_string(++refreshes); }, tagged);
    return refreshes > 0;
  }));
  checkStamped("r", "again1");
}
