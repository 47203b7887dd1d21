// Records as this library writes them (format version 1), byte for byte. They must decode the
// same after any later change: caches of different versions share a Redis during a rolling
// deploy. Add records here; never edit the ones that are here.
#include "support/catch.hpp"
#include "support/product.hpp"

#include <cacheaside/codec/record.hpp>

#include <string>

using cacheaside::EntryKind;
using testsupport::Product;

namespace {
std::string unhex(const std::string& hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

const Product kKettle{1, "kettle", "kitchen", 19.5};

// {"category":"kitchen","id":1,"name":"kettle","price":19.5}, loaded in 37 ms.
const std::string kValue = unhex("ca010000250000000000000"
                                 "07b2263617465676f7279223a226b69746368656e222c226964223a312c22"
                                 "6e616d65223a226b6574746c65222c227072696365223a31392e357d");
// The same value, loaded in 1200 ms, written with a 60 s stale window.
const std::string kStaleWindow = unhex("ca010000b004000060ea000"
                                       "07b2263617465676f7279223a226b69746368656e222c226964223a"
                                       "312c226e616d65223a226b6574746c65222c227072696365223a3139"
                                       "2e357d");
// A cached "not found", loaded in 5 ms.
const std::string kNegative = unhex("ca0101000500000000000000");
// A lease, with its 16-byte token.
const std::string kLease = unhex("ca0102000000000000000000"
                                 "00112233445566778899aabbccddeeff");
// The kettle loaded in 37 ms as the codec writes it since expiry stamps: an extension block of
// 10 bytes holding field 1 (the expiry stamp, 8 bytes) unset, for the server to set.
const std::string kStampSlot = unhex("ca0100102500000000000000"
                                     "0a00"
                                     "0108"
                                     "0000000000000000"
                                     "7b2263617465676f7279223a226b69746368656e222c226964223a"
                                     "312c226e616d65223a226b6574746c65222c227072696365223a3139"
                                     "2e357d");
// The same as the server stores it: stamped to expire at 1700000060000 ms (server clock).
const std::string kStamped = unhex("ca0100102500000000000000"
                                   "0a00"
                                   "0108"
                                   "6052e6cf8b010000"
                                   "7b2263617465676f7279223a226b69746368656e222c226964223a"
                                   "312c226e616d65223a226b6574746c65222c227072696365223a3139"
                                   "2e357d");
// A record of a later version: a field of type 7 (3 bytes) ahead of the stamp.
const std::string kLaterField = unhex("ca0100102500000000000000"
                                      "0f00"
                                      "0703aabbcc"
                                      "0108"
                                      "6052e6cf8b010000"
                                      "7b2263617465676f7279223a226b69746368656e222c226964223a"
                                      "312c226e616d65223a226b6574746c65222c227072696365223a3139"
                                      "2e357d");
} // namespace

TEST_CASE("golden records of format 1 decode to what they were written with") {
  const cacheaside::Codec<Product, cacheaside::JsonSerializer<Product>> codec({});
  std::string error;

  auto env = cacheaside::codec::inspect(kValue);
  REQUIRE(env);
  CHECK(env->kind == EntryKind::Value);
  CHECK(env->loadMillis == 37);
  CHECK(env->staleMillis == 0);
  CHECK(codec.decode(*env, error) == kKettle);

  env = cacheaside::codec::inspect(kStaleWindow);
  REQUIRE(env);
  CHECK(env->loadMillis == 1200);
  CHECK(env->staleMillis == 60000);
  CHECK(codec.decode(*env, error) == kKettle);

  env = cacheaside::codec::inspect(kNegative);
  REQUIRE(env);
  CHECK(env->kind == EntryKind::Negative);
  CHECK(env->loadMillis == 5);

  env = cacheaside::codec::inspect(kLease);
  REQUIRE(env);
  CHECK(env->kind == EntryKind::Lease);
  CHECK(env->payload.size() == 16);
}

TEST_CASE("stamped golden records decode, and the stamp is found among unknown fields") {
  const cacheaside::Codec<Product, cacheaside::JsonSerializer<Product>> codec({});
  std::string error;
  for (const std::string* bytes : {&kStampSlot, &kStamped, &kLaterField}) {
    const auto env = cacheaside::codec::inspect(*bytes);
    REQUIRE(env);
    CHECK(env->kind == EntryKind::Value);
    CHECK(env->loadMillis == 37);
    CHECK(codec.decode(*env, error) == kKettle);
  }
  CHECK(cacheaside::envelope::expiresAt(*cacheaside::codec::inspect(kStampSlot)) == 0);
  CHECK(cacheaside::envelope::expiresAt(*cacheaside::codec::inspect(kStamped)) == 1700000060000);
  CHECK(cacheaside::envelope::expiresAt(*cacheaside::codec::inspect(kLaterField)) == 1700000060000);
  // Records of format 1 before stamps carry none: their freshness is the server's PTTL.
  CHECK(cacheaside::envelope::expiresAt(*cacheaside::codec::inspect(kValue)) == 0);
  // The server stamps where the codec put the slot; a later field ahead of it moves it.
  CHECK(cacheaside::envelope::hasExpiryStampSlot(kStampSlot));
  CHECK_FALSE(cacheaside::envelope::hasExpiryStampSlot(kLaterField));
  CHECK_FALSE(cacheaside::envelope::hasExpiryStampSlot(kValue));
}

TEST_CASE("today's codec still writes the golden records byte for byte") {
  const cacheaside::Codec<Product, cacheaside::JsonSerializer<Product>> codec({});
  std::string out, error;
  // Values carry the expiry stamp's slot since stamps (kValue and kStaleWindow, without it,
  // are what earlier versions wrote).
  REQUIRE(codec.encode(kKettle, 37, 0, out, error) == cacheaside::codec::Encoded::Ok);
  CHECK(out == kStampSlot);
  REQUIRE(codec.encode(kKettle, 1200, 60000, out, error) == cacheaside::codec::Encoded::Ok);
  CHECK(out.substr(0, 12) == kStaleWindow.substr(0, 3) + '\x10' + kStaleWindow.substr(4, 8));
  CHECK(out.substr(12, 12) == kStampSlot.substr(12, 12));
  CHECK(out.substr(24) == kStaleWindow.substr(12));
  CHECK(cacheaside::codec::negativeRecord(5) == kNegative);
  const std::string lease = cacheaside::codec::leaseRecord();
  CHECK(lease.size() == kLease.size());
  CHECK(lease.substr(0, 12) == kLease.substr(0, 12));
}

TEST_CASE("the codec enforces maxValueBytes and reports serializer failures") {
  cacheaside::CodecOptions options;
  options.maxValueBytes = 10;
  const cacheaside::Codec<Product, cacheaside::JsonSerializer<Product>> codec(options);
  std::string out, error;
  CHECK(codec.encode(kKettle, 0, 0, out, error) == cacheaside::codec::Encoded::TooLarge);
  const cacheaside::Codec<double, cacheaside::JsonSerializer<double>> numbers({});
  auto env = cacheaside::codec::inspect(kValue);
  REQUIRE(env);
  CHECK_FALSE(numbers.decode(*env, error)); // a product is not a double
  CHECK_FALSE(error.empty());
}

TEST_CASE("a compressed record names its compressor, and a cache without it does not decode it") {
  std::string packed;
  cacheaside::envelope::appendHeader(packed, EntryKind::Value, 0, 0, 3);
  packed += "\x01\x02";
  const auto env = cacheaside::codec::inspect(packed);
  REQUIRE(env);
  CHECK(env->compressor == 3);
  const cacheaside::Codec<Product, cacheaside::JsonSerializer<Product>> codec({});
  std::string error;
  CHECK_FALSE(codec.decode(*env, error));
  CHECK(error.find("compressor 3") != std::string::npos);
}
