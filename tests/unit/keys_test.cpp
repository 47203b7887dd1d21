#include "support/catch.hpp"

#include <cacheaside/detail/keys.hpp>

#include <stdexcept>
#include <string>

using cacheaside::detail::printableKey;
using cacheaside::detail::redisKey;

TEST_CASE("a key is stored under its namespace with the user key as its hash tag") {
  CHECK(redisKey("api", "products:all") == "api:{products:all}");
}

TEST_CASE("keys keep every byte, NUL included") {
  const std::string key("a\0b \r\n\"\xff", 8);
  const std::string rk = redisKey("ns", key);
  CHECK(rk.size() == 4 + key.size() + 1);
  CHECK(rk.substr(4, key.size()) == key);
}

TEST_CASE("the empty key is rejected") {
  CHECK_THROWS_AS(redisKey("ns", ""), std::invalid_argument);
}

TEST_CASE("keys in messages are printable and bounded") {
  CHECK(printableKey(std::string("a\0\n\\", 4)) == "a\\x00\\x0a\\x5c");
  const std::string longKey(5000, 'k');
  const std::string shown = printableKey(longKey);
  CHECK(shown.size() < 200);
  CHECK(shown.find("5000 bytes") != std::string::npos);
}
