#include "support/catch.hpp"

#include <cacheaside/detail/sha1.hpp>

#include <set>
#include <string>

using cacheaside::detail::sha1Hex;

TEST_CASE("SHA-1 matches the FIPS 180 test vectors") {
  CHECK(sha1Hex("") == "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  CHECK(sha1Hex("abc") == "a9993e364706816aba3e25717850c26c9cd0d89d");
  CHECK(sha1Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
  CHECK(sha1Hex(std::string(1000000, 'a')) == "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
}

TEST_CASE("SHA-1 differs for every length around the block boundaries") {
  std::set<std::string> seen;
  for (std::size_t n = 50; n < 140; ++n) {
    seen.insert(sha1Hex(std::string(n, 'x')));
  }
  CHECK(seen.size() == 90);
}
