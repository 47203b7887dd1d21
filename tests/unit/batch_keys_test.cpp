// The de-duplication of getOrLoadMany's keys (detail/batch.hpp): first-seen order, and every
// position mapped to its key.
#include "support/catch.hpp"

#include <cacheaside/detail/batch.hpp>

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

using cacheaside::detail::DistinctKeys;

TEST_CASE("batch keys: duplicates map to the first position of their key") {
  const std::vector<std::string> keys{"b", "a", "b", "c", "a", "b"};
  const DistinctKeys d(keys);
  CHECK(d.keys == std::vector<std::string_view>{"b", "a", "c"});
  CHECK(d.slot == std::vector<std::size_t>{0, 1, 0, 2, 1, 0});
  CHECK(d.duplicates());
  const DistinctKeys none(std::vector<std::string>{});
  CHECK(none.keys.empty());
  CHECK(!none.duplicates());
}

TEST_CASE("batch keys: thousands of keys, each twice, with bytes that differ only at the end") {
  std::vector<std::string> keys;
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 5000; ++i) {
      keys.push_back(std::string("k\0", 2) + std::to_string(i));
    }
  }
  const DistinctKeys d(keys);
  REQUIRE(d.keys.size() == 5000);
  REQUIRE(d.slot.size() == 10000);
  for (std::size_t i = 0; i < 5000; ++i) {
    CHECK(d.keys[i] == keys[i]);
    CHECK(d.slot[i] == i);
    CHECK(d.slot[i + 5000] == i);
  }
  CHECK(!DistinctKeys(std::vector<std::string>(keys.begin(), keys.begin() + 5000)).duplicates());
}

TEST_CASE("batch keys: an empty key is refused") {
  CHECK_THROWS_AS(DistinctKeys(std::vector<std::string>{"a", ""}), std::invalid_argument);
}
