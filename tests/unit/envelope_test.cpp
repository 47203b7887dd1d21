#include "support/catch.hpp"

#include <cacheaside/envelope.hpp>

#include <string>

using cacheaside::EntryKind;
namespace envelope = cacheaside::envelope;

namespace {
std::string record(EntryKind kind, std::uint32_t loadMillis, const std::string& payload) {
  std::string out;
  envelope::appendHeader(out, kind, loadMillis);
  return out + payload;
}
} // namespace

TEST_CASE("a record decodes to the kind, load time and payload it was written with") {
  const std::string payload("{\"a\":1}\0tail", 12);
  const std::string bytes = record(EntryKind::Value, 0xA1B2C3D4u, payload);
  REQUIRE(bytes.size() == envelope::kHeaderSize + payload.size());
  const auto env = envelope::decode(bytes);
  REQUIRE(env);
  CHECK(env->kind == EntryKind::Value);
  CHECK(env->loadMillis == 0xA1B2C3D4u);
  CHECK(env->payload == payload);
}

TEST_CASE("load time and stale window are stored little-endian after a four-byte prefix") {
  std::string bytes;
  envelope::appendHeader(bytes, EntryKind::Lease, 0x01020304u, 0x05060708u);
  REQUIRE(bytes.size() == envelope::kHeaderSize);
  CHECK(static_cast<unsigned char>(bytes[0]) == 0xCA);
  CHECK(bytes[1] == 1);
  CHECK(bytes[2] == 2);
  CHECK(bytes[4] == 4);
  CHECK(bytes[7] == 1);
  CHECK(bytes[8] == 8);
  CHECK(bytes[11] == 5);
  const auto env = envelope::decode(bytes);
  REQUIRE(env);
  CHECK(env->loadMillis == 0x01020304u);
  CHECK(env->staleMillis == 0x05060708u);
}

TEST_CASE("bytes this library did not write do not decode") {
  const std::string good = record(EntryKind::Value, 7, "x");
  CHECK_FALSE(envelope::decode(""));
  CHECK_FALSE(envelope::decode(good.substr(0, envelope::kHeaderSize - 1)));
  CHECK_FALSE(envelope::decode("[{\"id\":1,\"name\":\"json written by someone else\"}]"));
  std::string badMagic = good;
  badMagic[0] = 'C';
  CHECK_FALSE(envelope::decode(badMagic));
  std::string otherVersion = good;
  otherVersion[1] = 2;
  CHECK_FALSE(envelope::decode(otherVersion));
  std::string unknownKind = good;
  unknownKind[2] = 3;
  CHECK_FALSE(envelope::decode(unknownKind));
  std::string reserved = good;
  reserved[3] = 0x20;
  CHECK_FALSE(envelope::decode(reserved));
  std::string shortExtensions = good; // flags an extension block longer than the record
  shortExtensions[3] = 0x10;
  CHECK_FALSE(envelope::decode(shortExtensions));
}

TEST_CASE("the flags byte names the compressor and an extension block readers skip") {
  std::string bytes;
  envelope::appendHeader(bytes, EntryKind::Value, 5, 6, 2);
  CHECK(bytes[3] == 2);
  bytes += "zz";
  auto env = envelope::decode(bytes);
  REQUIRE(env);
  CHECK(env->compressor == 2);
  CHECK(env->payload == "zz");
  bytes[3] = static_cast<char>(0x12);
  bytes.insert(envelope::kHeaderSize, std::string("\x03\x00"
                                                  "abc",
                                                  5));
  env = envelope::decode(bytes);
  REQUIRE(env);
  CHECK(env->extensions == "abc");
  CHECK(env->payload == "zz");
  std::string lease; // leases and "not found" carry neither
  envelope::appendHeader(lease, EntryKind::Lease, 0, 0, 1);
  CHECK_FALSE(envelope::decode(lease + "token"));
}

TEST_CASE("a negative record carries no payload") {
  CHECK(envelope::decode(record(EntryKind::Negative, 3, "")));
  CHECK_FALSE(envelope::decode(record(EntryKind::Negative, 3, "payload")));
}

TEST_CASE("every truncation and every single-byte change of the header is handled") {
  const std::string good = record(EntryKind::Value, 1234, "{\"k\":\"v\"}");
  for (std::size_t n = 0; n <= good.size(); ++n) {
    const auto env = envelope::decode(good.substr(0, n));
    CHECK(static_cast<bool>(env) == (n >= envelope::kHeaderSize));
  }
  for (std::size_t i = 0; i < envelope::kHeaderSize; ++i) {
    for (int v = 0; v < 256; ++v) {
      std::string mutated = good;
      mutated[i] = static_cast<char>(v);
      const auto env = envelope::decode(mutated);
      if (env) {
        CHECK(env->payload.size() == good.size() - envelope::kHeaderSize);
      }
    }
  }
}

TEST_CASE("extension fields are type-length-value: unknown ones are skipped, overruns hold none") {
  std::string bytes;
  const std::string fields("\x07\x02\x00xy\x01\x08\x00"
                           "ABCDEFGH",
                           16);
  envelope::appendHeader(bytes, EntryKind::Value, 0, 0, 0, fields);
  CHECK((static_cast<unsigned char>(bytes[3]) & envelope::kHasExtensions) != 0);
  bytes += "payload";
  const auto env = envelope::decode(bytes);
  REQUIRE(env);
  CHECK(env->extensions == fields);
  CHECK(env->payload == "payload");
  CHECK(envelope::findField(env->extensions, 7) == std::string_view("xy"));
  CHECK(envelope::findField(env->extensions, 1) == std::string_view("ABCDEFGH"));
  CHECK_FALSE(envelope::findField(env->extensions, 2));
  CHECK(envelope::expiresAt(*env) == 0x4847464544434241);
  CHECK_FALSE(envelope::findField(std::string_view("\x07\x05\x00xy", 5), 7)); // overruns
  CHECK_FALSE(envelope::findField(std::string_view("\x07\x00", 2), 7));
  cacheaside::Envelope wrongSize;
  wrongSize.extensions = std::string_view("\x01\x02\x00xy", 5);
  CHECK(envelope::expiresAt(wrongSize) == 0);
}

TEST_CASE("fields added to a record go after the ones it has: the stamp keeps its place") {
  std::string record;
  envelope::appendHeader(record, EntryKind::Value, 0, 0, 0, envelope::kUnsetExpiryStamp);
  record += "payload";
  REQUIRE(envelope::hasExpiryStampSlot(record));
  envelope::addExtensions(record, std::string("\x09\x01\x00z", 4));
  CHECK(envelope::hasExpiryStampSlot(record));
  const auto env = envelope::decode(record);
  REQUIRE(env);
  CHECK(env->payload == "payload");
  CHECK(envelope::findField(env->extensions, 9) == std::string_view("z"));
  std::string plain;
  envelope::appendHeader(plain, EntryKind::Negative, 0);
  envelope::addExtensions(plain, std::string("\x09\x01\x00z", 4));
  const auto negative = envelope::decode(plain);
  REQUIRE(negative);
  CHECK(envelope::findField(negative->extensions, 9) == std::string_view("z"));
}
