#include "support/catch.hpp"
#include "support/sync.hpp"

#include <cacheaside/codec/lz4.hpp>
#include <cacheaside/codec/zstd.hpp>

#include <cstdint>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

// Text shaped like the benchmark payload: a JSON product list repeated up to size bytes.
std::string productText(std::size_t size) {
  std::string out = "[";
  for (int i = 0; out.size() < size; ++i) {
    out += "{\"id\":" + std::to_string(i) + ",\"name\":\"Product " + std::to_string(i % 20) +
           "\",\"category\":\"" + (i % 3 == 0 ? "books" : "kitchen") +
           "\",\"price\":" + std::to_string(10 + i % 50) + ".99},";
  }
  out.resize(size);
  return out;
}

std::string randomBytes(std::size_t size) {
  std::mt19937_64 rng(42);
  std::string out(size, '\0');
  for (char& c : out) {
    c = static_cast<char>(rng() & 0xffu);
  }
  return out;
}

std::vector<std::unique_ptr<cacheaside::Compressor>> compressors() {
  std::vector<std::unique_ptr<cacheaside::Compressor>> all;
  all.push_back(std::make_unique<cacheaside::Lz4Compressor>());
  all.push_back(std::make_unique<cacheaside::ZstdCompressor>());
  all.push_back(std::make_unique<cacheaside::ZstdCompressor>(19));
  return all;
}

constexpr std::size_t kMax = std::size_t{64} << 20;

std::string compressed(const cacheaside::Compressor& c, const std::string& in) {
  std::string out;
  c.compress(in, out);
  return out;
}

} // namespace

TEST_CASE("compressors: ids are fixed, in 1..15") {
  CHECK(cacheaside::Lz4Compressor().id() == 1);
  CHECK(cacheaside::ZstdCompressor().id() == 2);
  CHECK(cacheaside::ZstdCompressor(1).id() == 2);
  CHECK(cacheaside::ZstdCompressor().level() == 3);
  CHECK_THROWS_AS(cacheaside::ZstdCompressor(1000), std::invalid_argument);
}

TEST_CASE("compressors: values round-trip at 0 B, 2 KB, 64 KB, 1 MB and random bytes") {
  for (const auto& c : compressors()) {
    CAPTURE(static_cast<int>(c->id()));
    for (const std::string& value :
         {std::string(), productText(2048), productText(64 << 10), productText(1 << 20),
          randomBytes(64 << 10), std::string(1 << 20, '\0')}) {
      CAPTURE(value.size());
      std::string packed = "hdr";
      c->compress(value, packed);
      REQUIRE(packed.compare(0, 3, "hdr") == 0); // compress appends
      if (value.size() >= 2048 && value[1] == '{') {
        CHECK(packed.size() * 3 < value.size()); // text of the payload's shape shrinks
      }
      std::string back = "out";
      REQUIRE(c->decompress(std::string_view(packed).substr(3), back, value.size()));
      CHECK(back.size() == value.size() + 3);
      CHECK(back.compare(0, 3, "out") == 0); // decompress appends
      CHECK(back.compare(3, std::string::npos, value) == 0);
    }
  }
}

TEST_CASE("compressors: truncated, corrupt and foreign input returns false") {
  const std::string value = productText(64 << 10);
  for (const auto& c : compressors()) {
    CAPTURE(static_cast<int>(c->id()));
    const std::string good = compressed(*c, value);
    std::string out;
    CHECK_FALSE(c->decompress("", out, kMax));
    CHECK_FALSE(c->decompress("\x01\x02", out, kMax));
    CHECK_FALSE(c->decompress(good.substr(0, good.size() / 2), out, kMax));
    CHECK_FALSE(c->decompress(good.substr(0, good.size() - 1), out, kMax));
    CHECK_FALSE(c->decompress(good + "x", out, kMax));
    CHECK_FALSE(c->decompress(value, out, kMax)); // uncompressed text
    std::string flipped = good;
    flipped[flipped.size() / 2] = static_cast<char>(flipped[flipped.size() / 2] ^ 0x55);
    flipped[flipped.size() - 2] = static_cast<char>(flipped[flipped.size() - 2] ^ 0x55);
    out.clear();
    // A corrupt block either fails or, if it happens to decode, cannot restore the value.
    CHECK((!c->decompress(flipped, out, kMax) || out != value));
  }
  // The two formats do not read each other.
  std::string out;
  CHECK_FALSE(cacheaside::Lz4Compressor().decompress(
      compressed(cacheaside::ZstdCompressor(), value), out, kMax));
  CHECK_FALSE(cacheaside::ZstdCompressor().decompress(
      compressed(cacheaside::Lz4Compressor(), value), out, kMax));
}

TEST_CASE("compressors: a value larger than maxBytes is refused") {
  const std::string value = productText(64 << 10);
  for (const auto& c : compressors()) {
    std::string out;
    CHECK_FALSE(c->decompress(compressed(*c, value), out, value.size() - 1));
    CHECK(c->decompress(compressed(*c, value), out, value.size()));
  }
}

TEST_CASE("compressors: a bomb claiming a huge size is rejected without allocating it") {
  SECTION("LZ4: the size prefix is checked before the output grows") {
    // Prefix 0x7fffffff (2 GiB - 1), then a tiny block.
    const std::string bomb("\xff\xff\xff\x7f\x00", 5);
    std::string out;
    CHECK_FALSE(cacheaside::Lz4Compressor().decompress(bomb, out, kMax));
    CHECK(out.capacity() < (std::size_t{1} << 20));
    // Above what LZ4 can decode at all, even with no maxBytes to speak of.
    const std::string bigger("\xff\xff\xff\xff\x00", 5);
    CHECK_FALSE(cacheaside::Lz4Compressor().decompress(bigger, out, SIZE_MAX));
    CHECK(out.capacity() < (std::size_t{1} << 20));
  }
  SECTION("zstd: the frame header's content size is checked before the output grows") {
    // Magic, descriptor 0xe0 (single segment, 8-byte content size), content size 1 TiB, then
    // one last RLE block of 1 byte.
    const std::string bomb("\x28\xb5\x2f\xfd\xe0"
                           "\x00\x00\x00\x00\x00\x01\x00\x00"
                           "\x0b\x00\x00\x61",
                           17);
    REQUIRE(ZSTD_getFrameContentSize(bomb.data(), bomb.size()) == (1ull << 40));
    std::string out;
    CHECK_FALSE(cacheaside::ZstdCompressor().decompress(bomb, out, kMax));
    CHECK(out.capacity() < (std::size_t{1} << 20));
  }
  SECTION("zstd: a frame that does not state its size is refused") {
    // A streaming frame: magic, descriptor 0x00 (no content size), window byte, last empty
    // raw block.
    const std::string unknown("\x28\xb5\x2f\xfd\x00\x00\x01\x00\x00", 9);
    std::string out;
    CHECK_FALSE(cacheaside::ZstdCompressor().decompress(unknown, out, kMax));
    CHECK(out.empty());
  }
}

TEST_CASE("compressors: one instance serves threads at once (zstd shares its contexts)") {
  const cacheaside::ZstdCompressor zstd;
  const cacheaside::Lz4Compressor lz4;
  constexpr int kThreads = 4;
  constexpr int kRounds = 100;
  testsupport::Latch start(kThreads);
  std::vector<int> good(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Each thread its own value, so a context mixed up between threads shows as a mismatch.
      const std::string value = productText(4096 + 512 * static_cast<std::size_t>(t));
      start.arriveAndWait();
      for (int i = 0; i < kRounds; ++i) {
        const cacheaside::Compressor& c =
            i % 2 == 0 ? static_cast<const cacheaside::Compressor&>(zstd) : lz4;
        std::string packed;
        c.compress(value, packed);
        std::string back;
        if (c.decompress(packed, back, value.size()) && back == value) {
          ++good[static_cast<std::size_t>(t)];
        }
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  CHECK(good == std::vector<int>(kThreads, kRounds));
}
