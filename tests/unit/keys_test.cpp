#include "support/catch.hpp"

#include <cacheaside/store/keys.hpp>

#include <stdexcept>
#include <string>

using cacheaside::detail::printableKey;
using cacheaside::store::hashSlot;
using cacheaside::store::keysFor;

TEST_CASE("a key is stored under its namespace with the user key as its hash tag") {
  const auto keys = keysFor("api", "products:all");
  CHECK(keys.value == "api:{products:all}");
  CHECK(keys.refreshLease == "api:{products:all}:lease");
}

TEST_CASE("keys keep every byte, NUL included") {
  const std::string key("a\0b \r\n\"\xff", 8);
  const std::string rk = keysFor("ns", key).value;
  CHECK(rk.size() == 4 + key.size() + 1);
  CHECK(rk.substr(4, key.size()) == key);
}

TEST_CASE("braces and percent signs are escaped, so different keys never collide") {
  CHECK(keysFor("ns", "}x{").value == "ns:{%7Dx%7B}");
  CHECK(keysFor("a{b}", "k").value == "a%7Bb%7D:{k}");
  CHECK(keysFor("ns", "%7D").value == "ns:{%257D}");
  CHECK(keysFor("ns", "%7D").value != keysFor("ns", "}").value);
}

TEST_CASE("the empty key is rejected") {
  CHECK_THROWS_AS(keysFor("ns", ""), std::invalid_argument);
}

// Slots as `redis-cli CLUSTER KEYSLOT` printed them on Redis 7.0.15.
TEST_CASE("hash slots match Redis Cluster's for known keys") {
  CHECK(hashSlot("123456789") == 12739);
  CHECK(hashSlot("foo") == 12182);
  CHECK(hashSlot("bar") == 5061);
  CHECK(hashSlot("hello") == 866);
  CHECK(hashSlot("{user1000}.following") == 3443);
  CHECK(hashSlot("a{}b") == 13694); // an empty tag hashes the whole key
  CHECK(hashSlot("a{b}c") == 3300);
  CHECK(hashSlot("{}") == 15257);
  CHECK(hashSlot("ns:{}x}") == 10327);
}

TEST_CASE("every key of a user key shares one slot, whatever the bytes of key and namespace") {
  const std::string nasty[] = {"}", "{",   "{}",   "}x{", "a}b{c", "}}}{{{", std::string("\0}", 2),
                               "%", "%7B", "plain"};
  for (const std::string& ns : {std::string("ns"), std::string("{"), std::string("}"),
                                std::string("a{}b"), std::string("{x}")}) {
    for (const std::string& key : nasty) {
      const auto keys = keysFor(ns, key);
      CAPTURE(ns, key);
      CHECK(hashSlot(keys.value) == hashSlot(keys.refreshLease));
      CHECK(hashSlot(keys.value) == hashSlot(keysFor("other", key).value)); // the tag is the key
    }
  }
}

TEST_CASE("keys in messages are printable and bounded") {
  CHECK(printableKey(std::string("a\0\n\\", 4)) == "a\\x00\\x0a\\x5c");
  const std::string longKey(5000, 'k');
  const std::string shown = printableKey(longKey);
  CHECK(shown.size() < 200);
  CHECK(shown.find("5000 bytes") != std::string::npos);
}
