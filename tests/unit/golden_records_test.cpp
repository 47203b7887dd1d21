// Records as this library writes them (format version 1), byte for byte. They must decode the
// same after any later change: caches of different versions share a Redis during a rolling
// deploy. Add records here; never edit the ones that are here.
#include "support/catch.hpp"
#include "support/product.hpp"

#include <cacheaside/codec/record.hpp>
#include <cacheaside/flow/tags.hpp>

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
// 11 bytes holding field 1 (the expiry stamp, 8 bytes) unset, for the server to set.
const std::string kStampSlot = unhex("ca0100102500000000000000"
                                     "0b00"
                                     "010800"
                                     "0000000000000000"
                                     "7b2263617465676f7279223a226b69746368656e222c226964223a"
                                     "312c226e616d65223a226b6574746c65222c227072696365223a3139"
                                     "2e357d");
// The same as the server stores it: stamped to expire at 1700000060000 ms (server clock).
const std::string kStamped = unhex("ca0100102500000000000000"
                                   "0b00"
                                   "010800"
                                   "6052e6cf8b010000"
                                   "7b2263617465676f7279223a226b69746368656e222c226964223a"
                                   "312c226e616d65223a226b6574746c65222c227072696365223a3139"
                                   "2e357d");
// A record of a later version: a field of type 7 (3 bytes) ahead of the stamp.
const std::string kLaterField = unhex("ca0100102500000000000000"
                                      "1100"
                                      "070300aabbcc"
                                      "010800"
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
  CHECK(out.substr(12, 13) == kStampSlot.substr(12, 13));
  CHECK(out.substr(25) == kStaleWindow.substr(12));
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

namespace {
// The kettle of kValue as the codec writes it (the expiry stamp's slot), stamped with tag
// "category:kitchen" at generation "0123456789abcdef" (a tags field after the stamp).
const std::string kTagged = unhex("ca0100102500000000000000"
                                  "3100"
                                  "0108000000000000000000"
                                  "022300"
                                  "100063617465676f72793a6b69746368656e"
                                  "1030313233343536373839616263646566"
                                  "7b2263617465676f7279223a226b69746368656e222c226964223a312c22"
                                  "6e616d65223a226b6574746c65222c227072696365223a31392e357d");
// A cached "not found" loaded in 5 ms, stamped with tag "t" at generation "" (never
// invalidated).
const std::string kTaggedNegative = unhex("ca01011005000000000000000700020400010074"
                                          "00");
} // namespace

TEST_CASE("golden tagged records decode, and today's codec stamps them byte for byte") {
  const cacheaside::Codec<Product, cacheaside::JsonSerializer<Product>> codec({});
  std::string error;
  auto env = cacheaside::codec::inspect(kTagged);
  REQUIRE(env);
  CHECK(env->loadMillis == 37);
  CHECK(codec.decode(*env, error) == kKettle);
  const auto tags =
      cacheaside::envelope::findField(env->extensions, cacheaside::envelope::kTagsField);
  REQUIRE(tags);
  CHECK(cacheaside::envelope::tagGeneration(*tags, "category:kitchen") == "0123456789abcdef");
  CHECK_FALSE(cacheaside::envelope::tagGeneration(*tags, "category"));
  CHECK_FALSE(cacheaside::envelope::findField(env->extensions, 3));
  CHECK(cacheaside::envelope::hasExpiryStampSlot(kTagged)); // the tags did not move the stamp

  env = cacheaside::codec::inspect(kTaggedNegative);
  REQUIRE(env);
  CHECK(env->kind == EntryKind::Negative);
  const auto negativeTags =
      cacheaside::envelope::findField(env->extensions, cacheaside::envelope::kTagsField);
  REQUIRE(negativeTags);
  CHECK(cacheaside::envelope::tagGeneration(*negativeTags, "t") == "");

  cacheaside::flow::Settings settings;
  settings.tags = {"category:kitchen"};
  std::string out;
  REQUIRE(codec.encode(kKettle, 37, 0, out, error) == cacheaside::codec::Encoded::Ok);
  cacheaside::flow::stampGenerations(out, settings, {"0123456789abcdef"});
  CHECK(out == kTagged);
  settings.tags = {"t"};
  std::string negative = cacheaside::codec::negativeRecord(5);
  cacheaside::flow::stampGenerations(negative, settings, {""});
  CHECK(negative == kTaggedNegative);
}

TEST_CASE("extension fields that run past their block are not read") {
  CHECK_FALSE(cacheaside::envelope::findField(std::string("\x01\x05\x00"
                                                          "ab",
                                                          5),
                                              1));
  CHECK_FALSE(cacheaside::envelope::tagGeneration(std::string("\x01\x00"
                                                              "t\x05"
                                                              "ab",
                                                              6),
                                                  "t"));
  std::string lease; // leases still carry no extension
  cacheaside::envelope::appendHeader(lease, EntryKind::Lease, 0);
  cacheaside::envelope::addExtensions(lease, "x");
  CHECK_FALSE(cacheaside::envelope::decode(lease));
}
